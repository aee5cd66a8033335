"""Accuracy of a model on a split of its data: what training validates with and the report measures."""
from __future__ import annotations

import math

import numpy as np
import paddle

EVAL_BATCH = 256


def loader_accuracy(run, loader) -> float:
    """Accuracy of ``run`` (a batch of images, a paddle tensor -> logits) over one pass of an evaluation loader."""
    right = total = 0
    for x, y in loader:
        logits = run(x)
        right += int((np.asarray(logits).argmax(1) == y.numpy()).sum())
        total += len(y)
    return right / total if total else math.nan


def loader_correct(run, loader) -> np.ndarray:
    """Per image of one pass of an evaluation loader, in order: whether ``run`` classified it right."""
    out = [np.asarray(run(x)).argmax(1) == y.numpy() for x, y in loader]
    return np.concatenate(out) if out else np.zeros(0, dtype=bool)


def split_correct(run, data, split: str, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Per image of a split of ``data``, in order: whether ``run`` classified it right (the paired
    comparisons of :mod:`compress.measure.uncertainty` need it image by image)."""
    if data.size(split) == 0:
        return np.zeros(0, dtype=bool)
    loader = data.loader(split, batch_size)
    try:
        return loader_correct(run, loader)
    finally:
        loader.close()


def model_runner(model):
    """``model`` as a ``run`` for :func:`loader_accuracy`: eval mode, no gradients, numpy logits."""
    def run(x):
        model.eval()
        with paddle.no_grad():
            return model(x).numpy()
    return run


def split_accuracy(run, data, split: str, batch_size: int = 256) -> float:
    """Accuracy of ``run`` on a split of ``data`` (a ``compress.data.ModelData``), streamed in batches through
    the model's evaluation preprocessing; ``run`` maps a batch (a paddle tensor) to logits."""
    if data.size(split) == 0:
        return math.nan
    loader = data.loader(split, batch_size)
    try:
        return loader_accuracy(run, loader)
    finally:
        loader.close()


def accuracy(model, data, split: str = "test", batch_size: int = 256) -> float:
    """A dygraph model's accuracy on a split of ``data`` (streamed)."""
    return split_accuracy(model_runner(model), data, split, batch_size)
