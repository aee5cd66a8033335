"""Paddle's own loader over a source: a ``paddle.io.Dataset``, a batch sampler, worker processes.

Reproducibility is a property of the data, not of how it is loaded:

- the order of an epoch is a permutation seeded by (seed, epoch), cut into *global* batches;
  with N ranks each global batch is split into N contiguous parts, so the ranks' local batches
  concatenate to exactly the batches one process sees;
- each sample's random augmentation is seeded by (seed, epoch, index) right before it is applied,
  so it does not depend on which worker process or rank decodes it.

``load_arrays`` is the bounded helper for the few places that want a few hundred evaluation
images as one array (export parity, INT8 calibration, activation criteria).
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import paddle

from ..errors import CompressError
from .images import to_channels
from .sources import Source
from .transforms import Preprocess

ENV_RANK, ENV_WORLD = "PADDLE_TRAINER_ID", "PADDLE_TRAINERS_NUM"  # set by paddle.distributed.launch


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation: a function of (seed, epoch, index) only."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


@contextlib.contextmanager
def seeded(seed: int):
    """Python's and numpy's global generators (which the transforms draw from) set for one sample, then
    restored: with ``num_workers=0`` the transforms run in the training process, whose streams stay as they were."""
    state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])


class ImageDataset(paddle.io.Dataset):
    """(float32 C,H,W array, int64 label) for each image of one split; augmented when ``train``."""

    def __init__(self, source: Source, split: str, preprocess: Preprocess, train: bool = False, seed: int = 0):
        super().__init__()
        if seed < 0:
            raise CompressError(f"the seed must be >= 0, got {seed}")
        self.source, self.split, self.preprocess = source, split, preprocess
        self.labels = source.labels(split)
        self.random = train and preprocess.augment != "none"
        self.transform = preprocess.train_transform() if self.random else preprocess.eval_transform()
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = to_channels(self.source.image(self.split, i, self.preprocess.size_hint), self.preprocess.channels)
        if self.random:
            with seeded(sample_seed(self.seed, self.epoch, int(i))):
                x = self.transform(img)
        else:
            x = self.transform(img)
        return np.ascontiguousarray(x, dtype=np.float32), self.labels[i]


class GlobalBatchSampler(paddle.io.DistributedBatchSampler):
    """Global batches of ``global_batch_size``, each split into ``world`` contiguous local parts.

    Why not ``DistributedBatchSampler``'s own order: it pads the index list to a multiple of the
    world size before shuffling, so the permutation, and every batch, changes with the number of
    ranks. Here the permutation depends on (seed, epoch) and the data size only. A last, partial
    global batch is split as evenly as possible (part 2 weighs local losses by their size). With
    ``sync`` (training under ``paddle.DataParallel``, where every rank must step together) a last
    batch smaller than the world size is dropped on every rank; without it (evaluation), nothing is
    dropped and a rank with an empty part skips it.
    """

    def __init__(self, dataset, global_batch_size: int, rank: int = 0, world: int = 1, shuffle: bool = False,
                 seed: int = 0, sync: bool = False, drop_last: bool = False):
        if global_batch_size < 1 or global_batch_size % world:
            raise CompressError(f"the batch size ({global_batch_size}) must be a positive multiple of the "
                                f"number of ranks ({world})")
        super().__init__(dataset, global_batch_size // world, num_replicas=world, rank=rank, shuffle=shuffle,
                         drop_last=drop_last)
        self.global_batch_size, self.seed, self.sync = global_batch_size, seed, sync

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self):
        """The epoch's global batches (index arrays): the same for every world size."""
        n, b = len(self.dataset), self.global_batch_size
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, n, b):
            batch = order[start:start + b]
            if len(batch) < b and (self.drop_last or (self.sync and len(batch) < self.nranks)):
                return
            yield batch

    def __iter__(self):
        for batch in self.global_batches():
            part = np.array_split(batch, self.nranks)[self.local_rank]
            if len(part):
                yield part.tolist()

    def __len__(self) -> int:
        n, b, world = len(self.dataset), self.global_batch_size, self.nranks
        rest = n % b
        last = rest > 0 and not self.drop_last and not (self.sync and rest < world) \
            and (rest >= world or self.local_rank < rest)
        return n // b + int(last)


def resolve_rank(rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """(rank, world) as given, else from ``paddle.distributed.launch``'s environment, else (0, 1)."""
    rank = int(os.environ.get(ENV_RANK, 0)) if rank is None else int(rank)
    world = int(os.environ.get(ENV_WORLD, 1)) if world is None else int(world)
    if world < 1 or not 0 <= rank < world:
        raise CompressError(f"rank {rank} of world size {world} is not a valid distributed setting")
    return rank, world


@dataclass
class Loader:
    """A ``paddle.io.DataLoader`` with its dataset and sampler. Call ``set_epoch`` before each epoch
    (worker processes are started per epoch, with the dataset as it is then)."""

    dataset: ImageDataset
    sampler: GlobalBatchSampler
    loader: paddle.io.DataLoader

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self.dataset.epoch = epoch

    def __iter__(self):
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.sampler)


def make_loader(source: Source, split: str, preprocess: Preprocess, batch_size: int, *, train: bool = False,
                seed: int = 0, rank: int | None = None, world: int | None = None, num_workers: int | None = None,
                drop_last: bool = False) -> Loader:
    """Batches ``[x float32 B,C,H,W, y int64 B]`` of one split; ``batch_size`` is the global batch.

    ``train``: shuffled (seeded by ``seed`` and the epoch), augmented, ranks kept in step;
    otherwise in order, the evaluation transform. ``rank``/``world`` default to the launcher's
    environment (pass ``world=1`` to give every rank the whole split). ``num_workers`` defaults to
    the source's ``default_workers`` (0 for in-memory digits, up to 4 for image files).
    """
    rank, world = resolve_rank(rank, world)
    dataset = ImageDataset(source, split, preprocess, train=train, seed=seed)
    sampler = GlobalBatchSampler(dataset, batch_size, rank, world, shuffle=train, seed=seed, sync=train,
                                 drop_last=drop_last)
    workers = source.default_workers if num_workers is None else int(num_workers)
    if workers < 0:
        raise CompressError(f"--num-workers must be >= 0, got {workers}")
    return Loader(dataset, sampler, paddle.io.DataLoader(dataset, batch_sampler=sampler, num_workers=workers))


def load_arrays(source: Source, split: str, preprocess: Preprocess, n: int | None = None,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """At most ``n`` images of a split through the evaluation transform, as (x float32 N,C,H,W, y int64).

    With ``n`` below the split's size, a seeded random subset in split order
    (``sorted(default_rng(seed).choice(size, n))``): representative even when a given split is
    sorted by class. Memory is ``n`` model inputs.
    """
    dataset = ImageDataset(source, split, preprocess)
    size = len(dataset)
    if n is None or n >= size:
        idx = np.arange(size)
    else:
        idx = np.sort(np.random.default_rng(seed).choice(size, size=n, replace=False))
    x = np.empty((len(idx), *preprocess.input_shape), dtype=np.float32)
    for j, i in enumerate(idx):
        x[j] = dataset[int(i)][0]
    return x, dataset.labels[idx]
