"""Data sources: an index of labelled images in train/val/test splits, decoded one image at a time.

Why an index: a source never decodes its images up front. It holds what identifies each image
(a row of an array, a file path) and its label, split into train/val/test; ``image(split, i)``
decodes one image when the loader asks for it, so memory does not grow with the data set.

The splits never depend on the training seed: a source without its own split gets a stratified
60/20/20 split with ``SPLIT_SEED`` (the same images as before streaming data existed); a source
that gives only train and a held-out set gets 10 % of its training images, stratified and seeded,
as the validation split (``carve_val``).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..common.errors import CompressError
from .images import array_to_image

SPLIT_SEED = 0  # the split never depends on the training seed
SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.1
RULE_60_20_20 = f"stratified 60/20/20, seed {SPLIT_SEED}"
RULE_GIVEN = "given: train/val/test"
RULE_CARVED = f"given train and held-out test; val = stratified {VAL_FRACTION:.0%} of train, seed {SPLIT_SEED}"


def stratified_split(labels: np.ndarray, where: str) -> dict[str, np.ndarray]:
    """Indices of a 60/20/20 train/val/test split, stratified when every class has >= 5 images."""
    from sklearn.model_selection import train_test_split  # optional heavy: only when a split is made

    idx = np.arange(len(labels))
    strat = labels if np.bincount(labels).min() >= 5 else None
    try:
        tr, rest = train_test_split(idx, test_size=0.4, random_state=SPLIT_SEED, stratify=strat)
        strat = labels[rest] if strat is not None else None
        va, te = train_test_split(rest, test_size=0.5, random_state=SPLIT_SEED, stratify=strat)
    except ValueError:
        raise CompressError(f"{where}: too few images ({len(labels)}) to split 60/20/20 into train/val/test") from None
    return {"train": tr, "val": va, "test": te}


def carve_val(train: np.ndarray, labels: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Split ``train`` (indices) into train and a seeded 10 % validation part, stratified when possible."""
    from sklearn.model_selection import train_test_split  # optional heavy: only when a split is made

    n = len(train)
    if n < 2:
        raise CompressError(f"{where}: too few training images ({n}) to set 10 % aside for validation")
    y = labels[train]
    counts = np.bincount(y)
    present = counts[counts > 0]
    n_val = math.ceil(VAL_FRACTION * n)
    ok = present.min() >= 2 and n_val >= len(present) and n - n_val >= len(present)
    tr, va = train_test_split(train, test_size=VAL_FRACTION, random_state=SPLIT_SEED, stratify=y if ok else None)
    return tr, va


def decoding_workers() -> int:
    """Loader workers for sources that decode real images: up to 4, leaving two cores to the training
    step's math (on 2 cores, workers slowed a 224x224 training step by more than they saved in waiting
    for data: benchmarks/results/data_memory.md)."""
    return min(4, max(0, (os.cpu_count() or 1) - 2))


class Source:
    """Labelled images in three splits. Subclasses say how one stored item becomes a PIL image.

    ``items[split]`` are indices into the source's storage (rows, files), ``labels`` the label of
    each stored item. ``defaults`` are the preprocessing choices that suit the source
    (see ``compress.data.transforms.Preprocess``).
    """

    kind: ClassVar[str] = ""
    builtin: ClassVar[bool] = False   # named by its registry name rather than by a path
    defaults: ClassVar[dict] = {"resize": "exact", "normalize": "half", "augment": "light"}

    def __init__(self, location: str, labels: np.ndarray, items: dict[str, np.ndarray],
                 class_names: list[str], split_rule: str):
        self.location = location
        self._labels = np.asarray(labels, dtype=np.int64)
        self._items = {s: np.asarray(items[s], dtype=np.int64) for s in SPLITS}
        self.class_names = list(class_names)
        self.split_rule = split_rule

    @classmethod
    def matches(cls, spec: str) -> bool:
        """Whether ``spec`` (a ``--data`` value) names a source of this kind; errors for a wrong path."""
        raise NotImplementedError

    @classmethod
    def open(cls, spec: str) -> "Source":
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _split(self, split: str) -> np.ndarray:
        if split not in self._items:
            raise CompressError(f"unknown split {split!r} (one of {', '.join(SPLITS)})")
        return self._items[split]

    def size(self, split: str) -> int:
        return len(self._split(split))

    def labels(self, split: str) -> np.ndarray:
        return self._labels[self._split(split)]

    def image(self, split: str, i: int, size_hint: tuple[int, int] | None = None):
        """Image ``i`` of ``split`` as an 8-bit ``L`` or ``RGB`` PIL image (at least ``size_hint`` if given)."""
        return self._load(int(self._split(split)[i]), size_hint)

    def _load(self, item: int, size_hint):
        raise NotImplementedError

    @property
    def default_workers(self) -> int:
        """Loader worker processes that pay off for this source (0: decode in the training process)."""
        return 0

    @property
    def stored_source(self) -> str:
        """How the sidecar names this source: a registry name as is, a path absolute."""
        return self.location if self.builtin else str(Path(self.location).resolve())

    def describe(self) -> dict:
        """The sidecar's ``data`` record."""
        return {"source": self.stored_source, "kind": self.kind, **{s: self.size(s) for s in SPLITS},
                "classes": self.num_classes, "split": self.split_rule}


class DigitsSource(Source):
    """scikit-learn's 1,797 8x8 grey digits (values 0..16), 10 classes: built in, no download."""

    kind = "digits"
    builtin = True

    def __init__(self):
        from sklearn.datasets import load_digits  # optional heavy: only the digits source needs it

        d = load_digits()
        self._pixels = d.images.astype(np.float32) * (255.0 / 16.0)   # 0..255, rounded at decode
        labels = d.target.astype(np.int64)
        super().__init__("digits", labels, stratified_split(labels, "digits"),
                         [str(i) for i in range(10)], RULE_60_20_20)

    @classmethod
    def matches(cls, spec: str) -> bool:
        return spec == cls.kind and not Path(spec).exists()

    @classmethod
    def open(cls, spec: str = "digits") -> "DigitsSource":
        return cls()

    def _load(self, item: int, size_hint):
        return array_to_image(self._pixels[item])
