"""Data-parallel runs under ``python -m paddle.distributed.launch --nproc_per_node N``.

Every rank trains on its part of each *global* batch (the loader's ``GlobalBatchSampler`` cuts it
with ``np.array_split``: :func:`part`) inside ``paddle.DataParallel``, which averages the
gradients. What must be the same on every rank is made so here: the per-sample losses of a step
are gathered in global-batch order (:func:`gather_rows`), sums are added over ranks
(:func:`all_reduce_sum`). Outside the launcher (world size 1) every function is the identity.
"""
from __future__ import annotations

import numpy as np
import paddle

from ..data.loader import resolve_rank


def world() -> tuple[int, int]:
    """(rank, world size) under ``paddle.distributed.launch``, else (0, 1)."""
    return resolve_rank()


def data_parallel(shard: tuple[int, int]):
    """The ``wrap`` for :func:`compress.training.loop.fit`: ``paddle.DataParallel`` once the process group is up,
    or None in a single process."""
    if shard[1] <= 1:
        return None
    paddle.distributed.init_parallel_env()
    return paddle.DataParallel


def part(global_size: int, shard: tuple[int, int]) -> tuple[int, int]:
    """(start, size) of rank ``shard[0]``'s part of a global batch of ``global_size`` samples."""
    sizes = [len(a) for a in np.array_split(np.arange(global_size), shard[1])]
    return int(sum(sizes[:shard[0]])), sizes[shard[0]]


def gather_rows(local: np.ndarray, global_size: int, world_size: int) -> np.ndarray:
    """Every rank's ``local`` rows (its part of a global batch), concatenated in rank order: the global batch's."""
    if world_size <= 1:
        return local
    sizes = [part(global_size, (r, world_size))[1] for r in range(world_size)]
    padded = np.zeros((max(sizes), *local.shape[1:]), dtype=local.dtype)
    padded[:len(local)] = local
    parts: list = []
    paddle.distributed.all_gather(parts, paddle.to_tensor(padded))
    return np.concatenate([p.numpy()[:n] for p, n in zip(parts, sizes)])


def all_reduce_sum(values: np.ndarray, world_size: int) -> np.ndarray:
    """``values`` added over all ranks (float64 kept: sums of statistics)."""
    if world_size <= 1:
        return values
    t = paddle.to_tensor(np.asarray(values, dtype=np.float64))
    paddle.distributed.all_reduce(t)
    return t.numpy()
