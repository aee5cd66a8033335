"""The sidecar: the JSON file next to a weights file that makes it usable.

A ``.pdparams`` file holds weights only. ``MODEL.compress.json`` says what the weights
belong to (architecture, input shape, classes, data, pre-processing), which blocks
were removed, and what was measured (statistics, metrics, lineage). :class:`Sidecar`
is its typed form, in the spirit of timm's ``PretrainedCfg``: one field per documented
key, read with :meth:`Sidecar.from_json` and written with :meth:`Sidecar.to_json`.
The file's content does not change: the same keys in the same order, ``format``
first; keys this version does not know are kept and written back; a known key absent
from a file stays absent while it keeps its default.

A ``Sidecar`` also reads like the JSON object it comes from (``sidecar["blocks"]``,
``sidecar.get("lineage")``, ``{**sidecar}``), so code written against the plain dict
keeps working.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CompressError
from .fileio import write_json
from .weights import WEIGHT_SUFFIXES

SIDECAR_SUFFIX = ".compress.json"
SIDECAR_FORMAT = "compress-sidecar/1"


@dataclass(eq=False)
class Sidecar(Mapping):
    """Everything compress knows about a weights file (see the README's sidecar table)."""

    arch: dict | None = None                 # {"spec": ..., "kwargs": {...}}
    input_shape: list | None = None          # [C, H, W]
    num_classes: int | None = None
    class_names: list | None = None
    data: dict | None = None                 # source and split sizes
    preprocess: dict | None = None           # pixel normalisation, to repeat on the device
    removed_blocks: list = field(default_factory=list)   # paths removed from the architecture
    blocks: list = field(default_factory=list)           # the current removable blocks
    blocks_from: str | None = None           # the path pattern that picked the blocks (None: skip connections)
    params: int | None = None
    flops: int | None = None
    training: dict | None = None             # settings, schedule, history, seconds
    statistics: list | None = None           # per-block survival statistics
    statistics_sums: dict | None = None      # their raw running sums
    metrics: dict = field(default_factory=dict)
    lineage: list = field(default_factory=list)          # one entry per train-from/prune step
    format: str = SIDECAR_FORMAT
    extra: dict = field(default_factory=dict)            # keys this version does not know
    absent: frozenset = frozenset()          # known keys the file did not have

    # -- JSON
    @classmethod
    def from_json(cls, data: Mapping) -> "Sidecar":
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "absent"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known},
                   absent=frozenset(_KEYS) - set(data))

    def to_json(self) -> dict:
        out = {"format": self.format}
        for name in _KEYS:
            value = getattr(self, name)
            if name in self.absent and value == _DEFAULTS[name]:
                continue
            out[name] = value
        out.update(self.extra)
        return out

    def replace(self, **changes) -> "Sidecar":
        """A copy with ``changes`` (``drop=("key", ...)`` also leaves those keys out of the file)."""
        drop = frozenset(changes.pop("drop", ()))
        absent = (self.absent - set(changes)) | drop  # a key given a value is written, as with dict.update
        changes.update({k: _DEFAULTS[k] for k in drop})
        return dataclasses.replace(self, absent=absent, **changes)

    # -- derived
    @property
    def spec(self) -> str | None:
        return self.arch.get("spec") if self.arch else None

    @property
    def data_source(self) -> str | None:
        """The data source recorded by ``train`` (a registry name or an absolute path)."""
        return self.data.get("source") if self.data else None

    @property
    def schedule(self) -> dict:
        """The drop-rate schedule the statistics were recorded under ({} if none)."""
        return (self.training.get("schedule") if self.training else None) or {}

    @property
    def prune_steps(self) -> list[dict]:
        return [s for s in self.lineage if "keep_total" in s]

    # -- read like the JSON object
    def __getitem__(self, key):
        if key in self.extra:
            return self.extra[key]
        if key == "format" or (key in _DEFAULTS and (key not in self.absent or getattr(self, key) != _DEFAULTS[key])):
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self):
        return iter(self.to_json())

    def __len__(self):
        return len(self.to_json())

    def __eq__(self, other):
        if isinstance(other, Mapping):
            return self.to_json() == dict(other)
        return NotImplemented


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


_DEFAULTS = {f.name: _default(f) for f in dataclasses.fields(Sidecar) if f.name not in ("format", "extra", "absent")}
_KEYS = tuple(_DEFAULTS)


def sidecar_path(weights: str | os.PathLike) -> Path:
    p = Path(weights)
    return p.with_name(p.stem + SIDECAR_SUFFIX) if p.suffix in WEIGHT_SUFFIXES else p.with_name(p.name + SIDECAR_SUFFIX)


def read_sidecar(weights: str | os.PathLike, required: bool = True) -> Sidecar | None:
    """The sidecar next to ``weights``; None if there is none and it is not ``required``."""
    path = sidecar_path(weights)
    if not path.is_file():
        if required:
            raise CompressError(f"{weights}: no sidecar {path.name} next to it; use a model written by compress "
                                "(`compress train` writes one), or give `arch` where the command has it", param="arch")
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CompressError(f"{path}: not a valid sidecar ({e})") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise CompressError(f"{path}: not a compress sidecar (format is not {SIDECAR_FORMAT})")
    return Sidecar.from_json(data)


def write_sidecar(weights: str | os.PathLike, sidecar: Sidecar | Mapping) -> Path:
    """Write the sidecar of ``weights`` atomically (a plain mapping is taken as its JSON)."""
    sc = sidecar if isinstance(sidecar, Sidecar) else Sidecar.from_json(sidecar)
    path = sidecar_path(weights)
    write_json(path, {**sc.to_json(), "format": SIDECAR_FORMAT})
    return path
