"""A model's data: a source together with the preprocessing the model is trained and evaluated with.

Why one object: training, evaluation, healing, the activation criteria, export verification,
INT8 calibration and the report must apply the same evaluation preprocessing to the same
source. ``ModelData`` pairs the two and hands out what each of them needs, without ever holding a
split in memory: ``loader`` (Paddle's streaming loader over a split) and ``arrays`` (a bounded
number of evaluation-transformed images, for parity, calibration and the criteria).

Which preprocessing (``ModelData.open``):

- a sidecar's ``preprocess`` record in the current format is used as written (only the training
  augmentation may be overridden, e.g. for healing);
- a record from before it (``{"mean": 0.5, "std": 0.5, ...}``: the shipped samples and older
  models) reads as exact resize + ``half``, which is what those models were trained with (their
  training shifted images by a pixel: ``light`` augmentation, should they be trained further);
- no record (a new model): the source's defaults (``Preprocess.for_source``), each overridable.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..common.errors import CompressError
from .loader import Loader, load_arrays, make_loader
from .registry import open_source, stored_source
from .sources import Source
from .transforms import AUGMENTS, NORMALIZATIONS, RESIZES, Preprocess


@dataclass(frozen=True)
class DataOptions:
    """How to read a model's data: preprocessing choices (``None``: recorded or the source's default) and the
    loader's worker processes (``None``: the source's default). Validates itself (errors name the parameter)."""

    resize: str | None = None
    normalize: str | None = None
    augment: str | None = None
    workers: int | None = None

    def __post_init__(self):
        for name, choices in (("resize", RESIZES), ("normalize", tuple(NORMALIZATIONS)), ("augment", AUGMENTS)):
            value = getattr(self, name)
            if value is not None and value not in choices:
                raise CompressError(f"`{name}` must be one of {', '.join(choices)}; got {value!r}", param=name)
        if self.workers is not None and self.workers < 0:
            raise CompressError(f"`workers` must be >= 0, got {self.workers}", param="workers")


@dataclass(frozen=True)
class ModelData:
    """A source (``spec``, as given on the command line) and the ``Preprocess`` applied to it."""

    spec: str
    source: Source
    preprocess: Preprocess
    workers: int | None = None   # loader worker processes (None: the source's default)

    @classmethod
    def open(cls, spec: str, input_shape, recorded: dict | None = None,
             options: DataOptions | None = None) -> "ModelData":
        """Open (index and header-check every image of) ``spec``; the preprocess from ``recorded`` (a sidecar's),
        else the source's defaults, with ``options``' choices (only ``augment`` may differ from a record)."""
        opts = options or DataOptions()
        source = open_source(spec)
        if recorded:
            pre = Preprocess.from_json(recorded, input_shape)
            changed = [n for n in ("resize", "normalize") if getattr(opts, n) not in (None, getattr(pre, n))]
            if changed:
                raise CompressError(f"the model was trained with {', '.join(f'{n} {getattr(pre, n)}' for n in changed)} "
                                    "(its sidecar's preprocess); that cannot change now", param=changed[0])
            legacy = recorded.get("format") is None   # trained with today's 'light' shift (see the module docstring)
            if opts.augment is not None or legacy:
                pre = dataclasses.replace(pre, augment=opts.augment or "light")
        else:
            pre = Preprocess.for_source(source, input_shape, opts.resize, opts.normalize, opts.augment)
        return cls(str(spec), source, pre, opts.workers)

    @classmethod
    def of_model(cls, bundle, spec: str | None = None, options: DataOptions | None = None) -> "ModelData":
        """A trained model's data (a ``compress.model.bundle.ModelBundle``): ``spec`` or the source its sidecar names,
        through the preprocess its sidecar records."""
        spec = spec or bundle.sidecar.data_source
        if not spec:
            raise CompressError("the model's sidecar names no data source: give `data`", param="data")
        return cls.open(spec, bundle.input_shape, bundle.sidecar.preprocess, options)

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    def size(self, split: str) -> int:
        return self.source.size(split)

    def labels(self, split: str) -> np.ndarray:
        return self.source.labels(split)

    def describe(self) -> dict:
        """The sidecar's ``data`` record."""
        return {**self.source.describe(), "source": stored_source(self.spec)}

    def loader(self, split: str, batch_size: int, *, train: bool = False, seed: int = 0, rank: int | None = None,
               world: int | None = None) -> Loader:
        """Batches of a split (``compress.data.make_loader``): training ones augmented and sharded across
        ranks; evaluation ones in order (``world=1`` by default: every rank sees the whole split)."""
        if not train and world is None:
            rank, world = 0, 1
        return make_loader(self.source, split, self.preprocess, batch_size, train=train, seed=seed, rank=rank,
                           world=world, num_workers=self.workers)

    def arrays(self, split: str, n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """At most ``n`` evaluation-transformed images of a split as one array (``compress.data.load_arrays``)."""
        return load_arrays(self.source, split, self.preprocess, n, seed)
