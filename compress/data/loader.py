"""Paddle's own loader over a source: a ``paddle.io.Dataset``, a batch sampler, worker processes.

Reproducibility is a property of the data, not of how it is loaded:

- the order of an epoch is a permutation seeded by (seed, epoch), cut into *global* batches;
  with N ranks each global batch is split into N contiguous parts, so the ranks' local batches
  concatenate to exactly the batches one process sees;
- each sample's random augmentation is seeded by (seed, epoch, index) right before it is applied,
  so it does not depend on which worker process or rank decodes it. The sampler hands out
  ``epoch * N + index``: the epoch travels with the index to whichever process decodes it.

Why one stream for all epochs: a worker forked later in a run shares the training process's
then large heap copy-on-write and keeps every page of it that training rewrites afterwards
(10 epochs over 500 photos with 2 workers forked anew each epoch peaked at 1.6 GB PSS, against
1.2 GB for one epoch over 5,000 photos). Paddle's ``persistent_workers`` would avoid that, but its
epoch hand-over hung here about once in 25 runs. So the sampler is endless, epoch after epoch,
and ``Loader`` cuts the one stream of batches into epochs: workers are forked once, at the first
iteration, and prefetching runs on across epoch boundaries.

Why no ``paddle.io.DataLoader`` without workers: its single-process mode decodes in a thread that,
on an exception, dies and leaves the training loop waiting forever, and that holds its iterator,
so an unfinished iterator is never collected (its thread and prefetched batches stay for the life
of the process). With ``num_workers=0`` the same sampler, dataset and collation run synchronously
in the iterating thread instead.

Why errors travel as data from workers: an exception raised in a worker arrives as a generic
``SystemError``. A sample that cannot be decoded becomes a batch holding its error message
instead, and ``Loader`` raises it as one ``CompressError`` line.

``load_arrays`` is the bounded helper for the few places that want a few hundred evaluation
images as one array (export parity, INT8 calibration, activation criteria).
"""
from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
from dataclasses import dataclass

import numpy as np
import paddle
from paddle.io.dataloader.collate import default_collate_fn

from ..common.errors import CompressError
from ..common.signals import die_with_parent
from .images import to_channels
from .sources import Source
from .transforms import Preprocess

ENV_RANK, ENV_WORLD = "PADDLE_TRAINER_ID", "PADDLE_TRAINERS_NUM"  # set by paddle.distributed.launch


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation: a function of (seed, epoch, index) only."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


@contextlib.contextmanager
def seeded(seed: int):
    """Python's and numpy's global generators, which ``paddle.vision``'s random transforms draw from,
    seeded for one sample and restored afterwards. Samples are decoded either in worker processes
    or, without workers, synchronously in the thread that iterates (``Loader``), so nothing else
    draws from them in between."""
    state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])


@dataclass(frozen=True)
class SampleError:
    """A sample that could not be decoded: its message travels through the loader as data."""

    message: str


def collate(samples: list):
    """Paddle's default collation, or, if a sample failed, a one-slot batch of its UTF-8 message."""
    failed = next((s for s in samples if isinstance(s, SampleError)), None)
    if failed is not None:
        return [np.frombuffer(failed.message.encode(), dtype=np.uint8)]
    return default_collate_fn(samples)


class ImageDataset(paddle.io.Dataset):
    """(float32 C,H,W array, int64 label) for each image of one split; augmented when ``train``.

    An index ``epoch * len(self) + i`` is image ``i`` with the augmentation of that epoch.
    """

    def __init__(self, source: Source, split: str, preprocess: Preprocess, train: bool = False, seed: int = 0):
        super().__init__()
        if seed < 0:
            raise CompressError(f"the seed must be >= 0, got {seed}")
        self.source, self.split, self.preprocess = source, split, preprocess
        self.labels = source.labels(split)
        self.random = train and preprocess.augment != "none"
        self.transform = preprocess.train_transform() if self.random else preprocess.eval_transform()
        self.seed = seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        epoch, i = divmod(int(index), len(self.labels))
        img = to_channels(self.source.image(self.split, i, self.preprocess.size_hint), self.preprocess.channels)
        if self.random:
            with seeded(sample_seed(self.seed, epoch, i)):
                x = self.transform(img)
        else:
            x = self.transform(img)
        return np.ascontiguousarray(x, dtype=np.float32), self.labels[i]


class _Fetching(paddle.io.Dataset):
    """The view of an ``ImageDataset`` the DataLoader indexes: decoding errors become ``SampleError``."""

    def __init__(self, dataset: ImageDataset):
        super().__init__()
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except CompressError as e:
            return SampleError(str(e))


class GlobalBatchSampler(paddle.io.DistributedBatchSampler):
    """Global batches of ``global_batch_size``, each split into ``world`` contiguous local parts.

    Why not ``DistributedBatchSampler``'s own order: it pads the index list to a multiple of the
    world size before shuffling, so the permutation, and every batch, changes with the number of
    ranks. Here the permutation depends on (seed, epoch) and the data size only. A last, partial
    global batch is split as evenly as possible (part 2 weighs local losses by their size). With
    ``sync`` (training under ``paddle.DataParallel``, where every rank must step together) a last
    batch smaller than the world size is dropped on every rank; without it (evaluation), nothing is
    dropped and a rank with an empty part skips it.

    Iterating it is endless: the epochs from ``self.epoch`` on, one after another (``Loader``
    takes ``len(self)`` batches per epoch).
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

    def global_batches(self, epoch: int):
        """An epoch's global batches (index arrays): the same for every world size."""
        n, b = len(self.dataset), self.global_batch_size
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, n, b):
            batch = order[start:start + b]
            if len(batch) < b and (self.drop_last or (self.sync and len(batch) < self.nranks)):
                return
            yield batch

    def local_batches(self, epoch: int):
        """This rank's batches of an epoch, as ``epoch * N + index`` (the epoch travels with each index)."""
        offset = epoch * len(self.dataset)
        for batch in self.global_batches(epoch):
            part = np.array_split(batch, self.nranks)[self.local_rank]
            if len(part):
                yield (part + offset).tolist()

    def __iter__(self):
        epoch = self.epoch
        while True:
            yield from self.local_batches(epoch)
            epoch += 1

    def __len__(self) -> int:
        n, b, world = len(self.dataset), self.global_batch_size, self.nranks
        rest = n % b
        last = rest > 0 and not self.drop_last and not (self.sync and rest < world) \
            and (rest >= world or self.local_rank < rest)
        return n // b + int(last)


def worker_start(parent_pid: int, worker_id: int) -> None:
    """In a loader worker process: die with the training process (whatever ends it, SIGKILL included) and
    leave Ctrl-C to it (a terminal's SIGINT reaches the whole process group; the parent ends its workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)


def resolve_rank(rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """(rank, world) as given, else from ``paddle.distributed.launch``'s environment, else (0, 1)."""
    rank = int(os.environ.get(ENV_RANK, 0)) if rank is None else int(rank)
    world = int(os.environ.get(ENV_WORLD, 1)) if world is None else int(world)
    if world < 1 or not 0 <= rank < world:
        raise CompressError(f"rank {rank} of world size {world} is not a valid distributed setting")
    return rank, world


class Loader:
    """Epochs of batches ``[x float32 B,C,H,W, y int64 B]`` cut from one stream: a ``paddle.io.DataLoader``
    with worker processes, or (``num_workers=0``) the same batches decoded in the iterating thread.

    Iterating gives epoch ``epoch`` and then moves on to the next; ``set_epoch`` chooses one (e.g.
    on resume). Worker processes are forked at the first iteration (or ``start``) and kept while
    the epochs follow each other; choosing any other epoch, or leaving one unfinished, restarts
    them. Start loaders before the training process's memory grows (see the module docstring).
    """

    def __init__(self, dataset: ImageDataset, sampler: GlobalBatchSampler, loader: paddle.io.DataLoader):
        self.dataset, self.sampler, self.loader = dataset, sampler, loader
        self.epoch = 0
        self._stream, self._stream_epoch = None, None   # the open stream and the epoch it is at

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def start(self) -> None:
        """Open the stream at ``epoch`` now: workers fork and prefetch its first batches."""
        if self._stream is None or self._stream_epoch != self.epoch:
            self.close()
            self.sampler.set_epoch(self.epoch)
            self._stream = iter(self.loader) if self.loader.num_workers > 0 else self._in_process()
            self._stream_epoch = self.epoch

    def _in_process(self):
        for indices in self.sampler:
            yield [paddle.to_tensor(a) for a in default_collate_fn([self.dataset[i] for i in indices])]

    def close(self) -> None:
        """Stop the stream: its workers exit (Paddle's reader thread holds its iterator, so an iterator
        that is merely dropped would keep its thread for the life of the process)."""
        stream, self._stream, self._stream_epoch = self._stream, None, None
        shutdown = getattr(stream, "_try_shutdown_all", None)
        if shutdown is not None:
            shutdown()

    def __del__(self):
        self.close()

    def __iter__(self):
        self.start()
        self._stream_epoch = None  # unknown until this epoch is finished
        for _ in range(len(self.sampler)):
            batch = next(self._stream)
            if len(batch) == 1:  # a SampleError's message (see ``collate``)
                self.close()
                raise CompressError(bytes(batch[0].numpy()).decode(errors="replace"))
            yield batch
        self.epoch += 1
        self._stream_epoch = self.epoch

    def __len__(self) -> int:
        return len(self.sampler)


def make_loader(source: Source, split: str, preprocess: Preprocess, batch_size: int, *, train: bool = False,
                seed: int = 0, rank: int | None = None, world: int | None = None, num_workers: int | None = None,
                drop_last: bool = False) -> Loader:
    """Batches ``[x float32 B,C,H,W, y int64 B]`` of one split; ``batch_size`` is the global batch.

    ``train``: shuffled (seeded by ``seed`` and the epoch), augmented, ranks kept in step;
    otherwise in order, the evaluation transform. ``rank``/``world`` default to the launcher's
    environment (pass ``world=1`` to give every rank the whole split). ``num_workers`` defaults to
    the source's ``default_workers`` (0 for in-memory digits; for image files up to 4, leaving two
    cores to the training step).
    """
    rank, world = resolve_rank(rank, world)
    dataset = ImageDataset(source, split, preprocess, train=train, seed=seed)
    sampler = GlobalBatchSampler(dataset, batch_size, rank, world, shuffle=train, seed=seed, sync=train,
                                 drop_last=drop_last)
    workers = source.default_workers if num_workers is None else int(num_workers)
    if workers < 0:
        raise CompressError(f"`workers` must be >= 0, got {workers}", param="workers")
    if len(sampler) == 0:
        raise CompressError(f"the {split} split ({len(dataset)} images) gives rank {rank} no batch of "
                            f"{batch_size} over {world} ranks")
    loader = paddle.io.DataLoader(_Fetching(dataset), batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                                  worker_init_fn=functools.partial(worker_start, os.getpid()) if workers else None)
    return Loader(dataset, sampler, loader)


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
