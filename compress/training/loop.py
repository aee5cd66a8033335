"""Training with block-level DropPath while recording survival statistics.

One loop serves ``compress train`` (from scratch or from weights) and, with a
teacher, healing after pruning. :func:`fit` composes named steps: the optimizer
(:func:`compress.training.optimizer.make_optimizer`), stochastic depth driven by a schedule
(:class:`DepthRun`), one optimisation step (:func:`train_step`, with
:func:`compress.training.distill.distillation_loss` when there is a teacher), and keep-best with early
stopping (:class:`KeepBest`).
"""
from __future__ import annotations

import functools
import math
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import paddle
import paddle.nn.functional as F

from ..common.errors import CompressError
from ..common.progress import NULL, Progress
from .checkpoint import Checkpointing, open_checkpoint, state_digest
from .config import FitConfig, FitResult
from .distill import distillation_loss, hidden_loss, hidden_taps
from .distributed import all_reduce_sum, gather_rows, part
from .droppath import StochasticDepth
from .evaluate import EVAL_BATCH, loader_accuracy, model_runner
from .optimizer import load_optimizer_arrays, make_optimizer, optimizer_arrays
from .schedules import make_schedule
from .statistics import SurvivalStats, increments


def seed_everything(seed: int) -> None:
    paddle.seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's randomness (DropPath masks, dropout): a function of (seed, epoch) only, so a
    run resumed at an epoch draws what the uninterrupted run drew there (no generator state to save)."""
    return int(np.random.SeedSequence([seed, epoch, 0x5EED]).generate_state(1)[0])


def as_tensor(a):
    """A loader's batch (already a paddle tensor) as is; a numpy array as a tensor."""
    return a if isinstance(a, paddle.Tensor) else paddle.to_tensor(a)


def train_step(runner, opt, xb, yb, config: FitConfig, scale: float, teacher=None, taps=None):
    """One optimisation step on a batch (numpy arrays or paddle tensors); returns (loss, per-sample
    task losses) as a float32 scalar and a float32 array, fetched from the device together (one copy).

    ``scale`` turns the summed loss into this process's share of the global batch's mean.
    With a ``teacher``, the loss is ``(1 - alpha) * task + alpha * distillation``; with ``taps`` (the
    student's and the teacher's :class:`HiddenTap`), distillation adds ``hidden_weight`` * :func:`hidden_loss`.
    """
    x = as_tensor(xb)
    logits = runner(x)
    per_sample = F.cross_entropy(logits, as_tensor(yb), reduction="none",
                                 label_smoothing=config.label_smoothing).reshape([-1])
    loss = per_sample.sum() * scale
    if teacher is not None:
        with paddle.no_grad():
            t_logits = teacher(x)
        kd = distillation_loss(logits, t_logits, config.temperature, scale)
        if taps is not None:
            kd = kd + config.hidden_weight * hidden_loss(taps[0].value, taps[1].value, scale)
        loss = (1 - config.alpha) * loss + config.alpha * kd
    loss.backward()
    opt.step()
    opt.clear_grad()
    host = paddle.concat([loss.detach().reshape([1]), per_sample.detach()]).numpy()
    return host[0], host[1:]


class DepthRun:
    """Stochastic depth over ``blocks`` for one training run.

    The schedule sets every epoch's per-block rates, reading a window of recent
    statistics (halved each epoch, so the adaptive schedule follows a moving network);
    each step's masks and per-sample losses feed both the run's statistics and the window.
    ``residual_ratio`` turns the residual-ratio probe on (the default) or off.

    Data parallel (``world_size`` > 1, :meth:`step` before each step): the masks are drawn for the global
    batch from the generator every rank seeds alike, and each rank keeps its part; the per-sample losses
    are gathered and the residual-ratio sums added over ranks, so every rank holds the global statistics
    (those one process would have) and the schedule decides alike everywhere.
    """

    def __init__(self, model, blocks, config: FitConfig, residual_ratio: bool = True, world_size: int = 1):
        self.schedule = make_schedule(config.schedule, len(blocks), config.drop_path_rate,
                                      target_keep=config.target_keep, warmup=config.warmup_epochs,
                                      max_rate=config.max_rate)
        self.stats = SurvivalStats(len(blocks), [b.path for b in blocks])
        self.window = SurvivalStats(len(blocks), [b.path for b in blocks])
        reduce = functools.partial(all_reduce_sum, world_size=world_size) if world_size > 1 else None
        self.sd = StochasticDepth(model, blocks, self.stats, residual_ratio, reduce=reduce).attach()
        self.world = world_size

    def step(self, global_size: int, rank: int) -> None:
        """The next step's global batch size, of which this process (``rank``) has its part."""
        self.sd.set_step(global_size, *part(global_size, (rank, self.world)))

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.sd.flush()  # the residual-ratio sums kept on the device: one copy per epoch
        self.sd.set_rates(self.schedule.rates(epoch, epochs, self.window))
        self.window.decay(0.5)

    def record(self, batch: int, per_sample) -> None:
        """A step's per-sample losses (an array, or a tensor: then copied to the host here)."""
        losses = per_sample.numpy() if isinstance(per_sample, paddle.Tensor) else np.asarray(per_sample)
        size = self.sd.masks.global_size
        if size is None:
            masks = self.sd.step_masks(batch)
        else:  # the global batch's masks and losses (gathered from every rank)
            masks = self.sd.global_masks(size)
            losses = gather_rows(losses, size, self.world)
        inc = increments(masks, losses.astype(np.float64))
        self.stats.add(inc)
        self.window.add(inc)

    def rates(self) -> list[float]:
        return [round(float(r), 4) for r in self.sd.rates]

    def state(self) -> tuple[dict, dict]:
        """(arrays, JSON) to checkpoint: the statistics and window sums (whatever is kept on the device
        included: reading the sums flushes it), the schedule's state."""
        arrays = {f"{name}/{k}": v.copy() for name, st in (("stats", self.stats), ("window", self.window))
                  for k, v in st.sums.items()}
        return arrays, {"schedule": self.schedule.state()}

    def load_state(self, arrays: dict, meta: dict) -> None:
        for name, st in (("stats", self.stats), ("window", self.window)):
            sums = st.sums
            for k in sums:
                sums[k][...] = arrays[f"{name}/{k}"]
        self.schedule.load_state(meta["schedule"])

    def detach(self) -> None:
        self.sd.detach()


class KeepBest:
    """Keep-best and early stopping on validation accuracy.

    With ``keep_best`` the starting point competes too (:meth:`start`: healing may never
    beat it) and :meth:`restore` puts the best state back; with ``patience`` training stops
    after that many epochs without a better accuracy.
    """

    def __init__(self, model, keep_best: bool, patience: int | None):
        self.model, self.keep_best, self.patience = model, keep_best, patience
        self.best_acc, self.best_epoch, self.best_state, self.bad_epochs = -1.0, None, None, 0

    def _take(self, acc: float, epoch: int) -> None:
        self.best_acc, self.best_epoch, self.bad_epochs = acc, epoch, 0
        self.best_state = {k: v.numpy().copy() for k, v in self.model.state_dict().items()}

    def start(self, acc: float) -> None:
        self._take(acc, 0)

    def update(self, acc: float, epoch: int) -> bool:
        """Record an epoch's validation accuracy; True when training should stop."""
        if not self.keep_best and self.patience is None:
            return False
        if acc > self.best_acc:
            self._take(acc, epoch)
            return False
        self.bad_epochs += 1
        return self.patience is not None and self.bad_epochs > self.patience

    def restore(self) -> None:
        if self.keep_best and self.best_state is not None:
            self.model.set_state_dict(self.best_state)

    def state(self) -> tuple[dict, dict]:
        arrays = {f"best/{k}": v for k, v in (self.best_state or {}).items()}
        return arrays, {"best_acc": self.best_acc, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                        "has_state": self.best_state is not None}

    def load_state(self, arrays: dict, meta: dict) -> None:
        self.best_acc, self.best_epoch, self.bad_epochs = meta["best_acc"], meta["best_epoch"], meta["bad_epochs"]
        self.best_state = {k[5:]: v for k, v in arrays.items() if k.startswith("best/")} if meta["has_state"] else None


def check_finite(loss: float, epoch: int, step: int, steps: int) -> None:
    """Stop a run whose loss stopped being a number, naming where (nothing is written after it)."""
    if not math.isfinite(loss):
        raise CompressError(f"training diverged: the loss became {loss} at epoch {epoch + 1}, step {step + 1} of "
                            f"{steps}; nothing was written (try a lower `lr`)", param="lr")


@dataclass
class _Loop:
    """What the steps of one training run share."""

    model: object
    runner: object          # the model, or its paddle.DataParallel wrapper
    loader: object          # the training split's compress.data.Loader (shuffled, augmented, sharded)
    n_train: int            # images in the training split (global batches are cut from them)
    config: FitConfig
    opt: object
    sched: object
    teacher: object
    depth: DepthRun | None
    shard: tuple[int, int]
    taps: tuple | None = None   # (student, teacher) HiddenTap: hidden-state distillation

    @property
    def steps(self) -> int:
        return len(self.loader)

    def run_epoch(self, epoch: int, advance, fields: dict) -> float:
        """One pass over the shuffled training data; returns the mean step loss."""
        cfg, world = self.config, self.shard[1]
        if self.depth is not None:
            self.depth.start_epoch(epoch, cfg.epochs)
        seed_everything(epoch_seed(cfg.seed, epoch))
        self.model.train()
        self.loader.set_epoch(epoch)
        losses = []
        for step, (xb, yb) in enumerate(self.loader):
            # each rank's loss is its share of the global batch's mean, so that the
            # gradients DataParallel averages over ranks equal one process's on the whole batch
            global_size = min(cfg.batch_size, self.n_train - step * cfg.batch_size)
            if self.depth is not None:
                self.depth.step(global_size, self.shard[0])
            loss, per_sample = train_step(self.runner, self.opt, xb, yb, cfg, world / global_size, self.teacher,
                                          self.taps)
            if self.sched is not None:
                self.sched.step()
            if self.depth is not None:
                self.depth.record(len(yb), per_sample)
            losses.append(float(loss))
            check_finite(losses[-1], epoch, step, self.steps)
            advance(1, images=global_size, epoch=f"{epoch + 1}/{cfg.epochs}", loss=losses[-1], **fields)
        # each rank's step loss is its share of the global batch's mean: their sum over ranks is that mean
        return float(all_reduce_sum(np.array([np.mean(losses)]), world)[0]) / world


def _val_loader(data):
    """The validation split's loader, opened once for the whole run (None without validation images)."""
    return data.loader("val", EVAL_BATCH) if data.size("val") else None


def run_identity(model, data, config: FitConfig, blocks, teacher, extra: dict | None = None) -> dict:
    """What makes a run this run, for its checkpoints: the configuration, the data and its preprocess,
    the blocks, the sha256 of the initial weights (and of the teacher's), and the caller's ``extra``."""
    return {"config": asdict(config), "data": data.describe(), "preprocess": data.preprocess.to_json(),
            "blocks": [b.path for b in blocks or []], "initial_weights": state_digest(model.state_dict()),
            "teacher": state_digest(teacher.state_dict()) if teacher is not None else None, **(extra or {})}


def fit(model, data, config: FitConfig, blocks=None, teacher=None, progress: Progress = NULL,
        shard: tuple[int, int] = (0, 1), wrap=None, checkpoint: Checkpointing | None = None) -> FitResult:
    """Train ``model`` on ``data`` (a ``compress.data.ModelData``: its training split streamed through its
    preprocess, augmentation included); with ``blocks`` and a drop rate, under stochastic depth with statistics.

    ``teacher`` adds distillation (KL on temperature-scaled logits, weight ``alpha``; with ``hidden_weight``,
    an MSE on the classifier's input too, see :func:`hidden_loss`).
    ``shard=(rank, world)`` keeps this process's part of every global batch
    (data parallel); ``wrap`` is applied to the model for the forward pass
    (``paddle.DataParallel``). A loss that stops being finite ends the run with a ``CompressError``.

    ``checkpoint``: after every epoch, the run's whole state is saved there (rank 0 writes); with its
    ``resume``, the run goes on from the saved epoch and ends as the uninterrupted run would have
    (see :mod:`compress.training.checkpoint`; its identity is completed here with :func:`run_identity`).
    """
    if checkpoint is not None:
        checkpoint.extend(run_identity(model, data, config, blocks, teacher))
        checkpoint.write = shard[0] == 0
    saved = open_checkpoint(checkpoint)
    saved = saved.load() if saved is not None else None
    taps = train_loader = val_loader = None
    try:  # the hooks of hidden-state distillation come off, and the loaders close, however this ends
        taps = hidden_taps(model, teacher, data.preprocess.input_shape, data.num_classes) \
            if teacher is not None and config.hidden_weight > 0 else None
        seed_everything(config.seed)
        train_loader = data.loader("train", config.batch_size, train=True, seed=config.seed, rank=shard[0],
                                   world=shard[1])
        train_loader.set_epoch(saved[0] if saved is not None else 0)
        train_loader.start()   # workers fork before this process's memory grows
        val_loader = _val_loader(data)
        opt, sched = make_optimizer(model, config, len(train_loader))
        depth = DepthRun(model, blocks, config, world_size=shard[1]) if blocks and config.drop_path_rate > 0 else None
        loop = _Loop(model, wrap(model) if wrap else model, train_loader, data.size("train"), config, opt, sched,
                     teacher, depth, shard, taps)
        return _run(loop, val_loader, progress, checkpoint, saved)
    finally:
        for tap in taps or ():
            tap.remove()
        if train_loader is not None:
            train_loader.close()
        if val_loader is not None:
            val_loader.close()


def _val_accuracy(model, val_loader) -> float:
    return loader_accuracy(model_runner(model), val_loader) if val_loader is not None else math.nan


def _save(loop: _Loop, keeper: KeepBest, result: FitResult, ck: Checkpointing, epoch: int, stop: bool,
          seconds: float) -> None:
    """The run's state after ``epoch`` epochs, to its checkpoint."""
    arrays = {f"model/{k}": v.numpy() for k, v in loop.model.state_dict().items()}
    opt_arrays, meta = optimizer_arrays(loop.model, loop.opt)
    keep_arrays, meta["keeper"] = keeper.state()
    arrays.update(opt_arrays)
    arrays.update(keep_arrays)
    if loop.depth is not None:
        depth_arrays, meta["depth"] = loop.depth.state()
        arrays.update(depth_arrays)
    meta.update(history=result.history, stopped=stop, seconds=seconds)
    ck.save(epoch, arrays, meta)


def _restore(loop: _Loop, keeper: KeepBest, result: FitResult, saved) -> tuple[int, bool, float]:
    """Put a checkpoint's state back; returns (epochs done, whether the run had stopped early, seconds spent)."""
    epoch, meta, arrays = saved
    loop.model.set_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
    load_optimizer_arrays(loop.model, loop.opt, arrays, meta)
    keeper.load_state(arrays, meta["keeper"])
    if loop.depth is not None:
        loop.depth.load_state(arrays, meta["depth"])
    result.history = list(meta["history"])
    return epoch, bool(meta["stopped"]), float(meta["seconds"])


def _start(loop: _Loop, keeper: KeepBest, result: FitResult, val_loader, saved, progress: Progress):
    """Where the epochs start: a checkpoint's state, or the beginning (the start competing for keep-best)."""
    if saved is not None:
        done, stopped, seconds = _restore(loop, keeper, result, saved)
        progress.log(f"resumed after epoch {done}/{loop.config.epochs}")
        return done, stopped, seconds
    if loop.config.keep_best:  # the starting point competes too: healing may never beat it
        keeper.start(_val_accuracy(loop.model, val_loader))
    return 0, False, 0.0


def _run(loop: _Loop, val_loader, progress: Progress, ck: Checkpointing | None = None, saved=None) -> FitResult:
    """The epochs of a run: train, validate, keep the best, stop early, checkpoint; statistics detached at the
    end."""
    model, config, depth = loop.model, loop.config, loop.depth
    if loop.teacher is not None:
        loop.teacher.eval()
    keeper = KeepBest(model, config.keep_best, config.patience)
    result = FitResult(stats=depth.stats if depth is not None else None)
    first, stopped, before = _start(loop, keeper, result, val_loader, saved, progress)
    t0 = time.perf_counter()
    try:
        with progress.task("training", (config.epochs - first) * loop.steps) as advance:  # resumed: what is left
            last_val: dict = {}
            for epoch in range(first, config.epochs if not stopped else first):
                loss = loop.run_epoch(epoch, advance, last_val)
                val = _val_accuracy(model, val_loader)
                last_val = {"val_acc": val}
                rec = {"epoch": epoch + 1, "loss": loss, "val_accuracy": val}
                if depth is not None:
                    rec["rates"] = depth.rates()
                result.history.append(rec)
                progress.log(f"epoch {epoch + 1}/{config.epochs}: loss {loss:.4f}, val acc {val:.4f}")
                stop = keeper.update(val, epoch + 1)
                if ck is not None:
                    _save(loop, keeper, result, ck, epoch + 1, stop, before + time.perf_counter() - t0)
                if stop:
                    progress.log(f"early stop after epoch {epoch + 1} (best {keeper.best_epoch})")
                    break
    finally:
        if depth is not None:
            depth.detach()
    keeper.restore()
    model.eval()
    result.best_epoch = keeper.best_epoch
    result.schedule = depth.schedule.describe() if depth is not None else None
    result.seconds = before + time.perf_counter() - t0
    return result
