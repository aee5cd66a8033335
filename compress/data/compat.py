"""Transitional: the whole-split arrays the rest of the code base used before streaming data.

``load_data`` returns every split as one float32 array, through the new sources and the
evaluation transform with today's preprocessing (exact resize to the input shape, bilinear;
``(x/255 - 0.5) / 0.5``), so its callers are unchanged. Memory grows with the data set here:
part 2 of issue 9 moves its callers (training, healing, evaluation, export) onto
``make_loader`` / ``load_arrays`` and then removes this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .loader import load_arrays
from .registry import open_source, source_kind
from .sources import SPLITS
from .transforms import Preprocess


@dataclass
class ArrayData:
    """Every split of a source as arrays (transitional; see the module docstring)."""

    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: list[str]
    record: dict = field(default_factory=dict)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def describe(self) -> dict:
        return dict(self.record)


Dataset = ArrayData  # the name the code base imports (transitional)

_CACHE: dict = {}


def load_data(source: str, input_shape) -> ArrayData:
    """Load a data source by name or path as arrays for ``input_shape`` (cached per process). Transitional."""
    kind = source_kind(source)
    key = (kind, str(Path(source).resolve()) if kind != "digits" else source, tuple(input_shape))
    if key not in _CACHE:
        src = open_source(source)
        pre = Preprocess(tuple(input_shape), "exact", "half", "none")
        parts = [a for s in SPLITS for a in load_arrays(src, s, pre)]
        _CACHE[key] = ArrayData(str(source), *parts, num_classes=src.num_classes, class_names=src.class_names,
                                record=src.describe())
    return _CACHE[key]
