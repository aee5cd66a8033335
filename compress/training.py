"""Training with block-level DropPath while recording survival statistics.

One loop serves ``compress train`` (from scratch or from weights) and, with a
teacher, healing after pruning.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import paddle
import paddle.nn.functional as F

from .droppath import StochasticDepth
from .progress import NULL, Progress
from .schedules import make_schedule
from .statistics import SurvivalStats


def seed_everything(seed: int) -> None:
    paddle.seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def predict(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits for ``x`` in eval mode."""
    model.eval()
    outs = []
    with paddle.no_grad():
        for i in range(0, len(x), batch_size):
            outs.append(model(paddle.to_tensor(x[i:i + batch_size])).numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    if len(y) == 0:
        return math.nan
    return float((predict(model, x, batch_size).argmax(1) == y).mean())


def augment(x: np.ndarray, rng: np.random.Generator, shift: int = 1) -> np.ndarray:
    """Random translation by up to ``shift`` pixels (zero-padded at the data's minimum)."""
    if shift <= 0:
        return x
    n, c, h, w = x.shape
    pad = np.pad(x, ((0, 0), (0, 0), (shift, shift), (shift, shift)), constant_values=float(x.min()))
    dy, dx = rng.integers(0, 2 * shift + 1, size=2)
    return np.ascontiguousarray(pad[:, :, dy:dy + h, dx:dx + w])


@dataclass
class FitConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    drop_path_rate: float = 0.0
    schedule: str = "uniform"
    target_keep: float | None = None
    warmup_epochs: int | None = None
    max_rate: float = 0.7       # adaptive with a target: final drop rate of the targeted blocks
    augment_shift: int = 1
    label_smoothing: float = 0.0
    # healing: distillation from a teacher's logits
    alpha: float = 0.5          # weight of the KD term
    temperature: float = 2.0
    patience: int | None = None  # early stopping on val accuracy; None = run all epochs
    keep_best: bool = False


@dataclass
class FitResult:
    history: list = field(default_factory=list)
    stats: SurvivalStats | None = None
    schedule: dict | None = None
    best_epoch: int | None = None
    seconds: float = 0.0


def fit(model, data, config: FitConfig, blocks=None, teacher=None, progress: Progress = NULL,
        shard: tuple[int, int] = (0, 1), wrap=None) -> FitResult:
    """Train ``model`` on ``data``; with ``blocks`` and a drop rate, under stochastic depth with statistics.

    ``teacher`` adds distillation (KL on temperature-scaled logits, weight ``alpha``).
    ``shard=(rank, world)`` keeps this process's part of every global batch
    (data parallel); ``wrap`` is applied to the model for the forward pass
    (``paddle.DataParallel``).
    """
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    x_tr, y_tr = data.x_train, data.y_train
    steps_per_epoch = max(1, math.ceil(len(y_tr) / config.batch_size))
    total_steps = steps_per_epoch * max(1, config.epochs)
    sched = paddle.optimizer.lr.OneCycleLR(max_learning_rate=config.lr, total_steps=total_steps, phase_pct=0.1) \
        if config.epochs > 0 else config.lr
    opt = paddle.optimizer.AdamW(learning_rate=sched, parameters=model.parameters(), weight_decay=config.weight_decay)
    stats = window = sd = schedule = None
    if blocks and config.drop_path_rate > 0:
        schedule = make_schedule(config.schedule, len(blocks), config.drop_path_rate,
                                 target_keep=config.target_keep, warmup=config.warmup_epochs,
                                 max_rate=config.max_rate)
        stats = SurvivalStats(len(blocks), [b.path for b in blocks])
        window = SurvivalStats(len(blocks), [b.path for b in blocks])
        sd = StochasticDepth(model, blocks, stats).attach()
    if teacher is not None:
        teacher.eval()
    runner = wrap(model) if wrap else model
    result = FitResult(stats=stats)
    best_acc, best_state, bad_epochs = -1.0, None, 0
    if config.keep_best:  # the starting point competes too: healing may never beat it
        best_acc, result.best_epoch = accuracy(model, data.x_val, data.y_val), 0
        best_state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    rank, world = shard
    last_val: dict = {}
    t0 = time.perf_counter()
    try:
        with progress.task("training", config.epochs * steps_per_epoch) as advance:
            for epoch in range(config.epochs):
                if sd is not None:
                    sd.rates = schedule.rates(epoch, config.epochs, window)
                    window.decay(0.5)
                model.train()
                perm = rng.permutation(len(y_tr))
                losses = []
                for step in range(steps_per_epoch):
                    idx = perm[step * config.batch_size:(step + 1) * config.batch_size]
                    # each rank's loss is its share of the global batch's mean, so that the
                    # gradients DataParallel averages over ranks equal one process's on the whole batch
                    if len(idx) < world:  # a tail batch too small to give every rank a sample
                        continue
                    scale = world / len(idx)
                    idx = idx[rank::world]
                    xb = augment(x_tr[idx], rng, config.augment_shift)
                    yb = paddle.to_tensor(y_tr[idx])
                    logits = runner(paddle.to_tensor(xb))
                    per_sample = F.cross_entropy(logits, yb, reduction="none",
                                                 label_smoothing=config.label_smoothing).reshape([-1])
                    loss = per_sample.sum() * scale
                    if teacher is not None:
                        with paddle.no_grad():
                            t_logits = teacher(paddle.to_tensor(xb))
                        tau = config.temperature
                        kd = F.kl_div(F.log_softmax(logits / tau, axis=-1), F.softmax(t_logits / tau, axis=-1),
                                      reduction="sum") * scale * tau * tau
                        loss = (1 - config.alpha) * loss + config.alpha * kd
                    loss.backward()
                    opt.step()
                    opt.clear_grad()
                    if isinstance(sched, paddle.optimizer.lr.LRScheduler):
                        sched.step()
                    if sd is not None:
                        masks = sd.step_masks(len(idx))
                        ls = per_sample.numpy().astype(np.float64)
                        stats.update(masks, ls)
                        window.update(masks, ls)
                    losses.append(float(loss))
                    advance(1, epoch=f"{epoch + 1}/{config.epochs}", loss=losses[-1], **last_val)
                val = accuracy(model, data.x_val, data.y_val)
                last_val = {"val_acc": val}
                rec = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_accuracy": val}
                if sd is not None:
                    rec["rates"] = [round(float(r), 4) for r in sd.rates]
                result.history.append(rec)
                progress.log(f"epoch {epoch + 1}/{config.epochs}: loss {rec['loss']:.4f}, val acc {val:.4f}")
                if config.keep_best or config.patience is not None:
                    if val > best_acc:
                        best_acc, bad_epochs, result.best_epoch = val, 0, epoch + 1
                        best_state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
                    else:
                        bad_epochs += 1
                        if config.patience is not None and bad_epochs > config.patience:
                            progress.log(f"early stop after epoch {epoch + 1} (best {result.best_epoch})")
                            break
    finally:
        if sd is not None:
            sd.detach()
    if best_state is not None and config.keep_best:
        model.set_state_dict(best_state)
    model.eval()
    result.schedule = schedule.describe() if schedule is not None else None
    result.seconds = time.perf_counter() - t0
    return result


# --------------------------------------------------------------------------- the `train` command
def train(out, arch: str | None = None, arch_kwargs: dict | None = None, init=None, data: str = "digits",
          input_shape=None, config: FitConfig | None = None, progress: Progress = NULL) -> dict:
    """Train (or fine-tune ``init``) under stochastic depth; write weights + sidecar to ``out``.

    Returns the sidecar that was written.
    """
    from pathlib import Path

    from .blocks import find_blocks
    from .data import load_data, stored_source
    from .errors import CompressError
    from .flops import count_flops, count_params
    from .loading import (ArchSpec, build_model, canonical_spec, check_num_classes, check_weights_path,
                          default_input_shape, load_model, resolve_arch, save_model)

    config = config or FitConfig()
    if not 0.0 <= config.drop_path_rate < 1.0:  # also false for NaN
        raise CompressError(f"--drop-path-rate must be in [0, 1), got {config.drop_path_rate}")
    if config.epochs < 0 or config.batch_size < 1 or not (math.isfinite(config.lr) and config.lr > 0) \
            or not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
        raise CompressError("--epochs must be >= 0, --batch-size >= 1, --lr > 0 and --weight-decay >= 0 (finite)")
    make_schedule(config.schedule, 8, config.drop_path_rate, target_keep=config.target_keep,
                  warmup=config.warmup_epochs, max_rate=config.max_rate)  # validate its flags before any work
    out = check_weights_path(out)
    if init is not None and Path(init).resolve() == out.resolve():
        raise CompressError(f"--out {out} would overwrite the input model; choose another path")
    lineage = []
    if init is not None:
        bundle = load_model(init, arch=arch, arch_kwargs=arch_kwargs, input_shape=input_shape)
        model, base = bundle.model, bundle.sidecar
        shape = tuple(base["input_shape"])
        spec = ArchSpec(base["arch"]["spec"], base["arch"].get("kwargs", {}))
        lineage = list(base.get("lineage", [])) + [{"parent": str(init), "step": "train"}]
        removed = base.get("removed_blocks", [])
    else:
        if arch is None:
            raise CompressError("give --arch (a shipped name, module:callable or file.py:callable) or an initial model")
        spec = ArchSpec(canonical_spec(arch), arch_kwargs or {})
        resolve_arch(arch)  # fail early on an unknown architecture
        shape = tuple(input_shape) if input_shape else default_input_shape(arch)
        if shape is None:
            raise CompressError(f"--input-shape C,H,W is needed for {arch}")
        model, removed = None, []
    progress.log(f"loading data {data!r} at input shape {shape}")
    ds = load_data(data, shape)
    if model is None:
        seed_everything(config.seed)
        model = build_model(spec, shape, ds.num_classes)
    check_num_classes(model, shape, ds.num_classes)
    blocks = find_blocks(model, shape)
    total_flops, per_block = count_flops(model, shape, blocks)
    for b in blocks:
        b.flops = per_block[b.path]
    if config.drop_path_rate > 0 and not blocks:
        raise CompressError("the model has no removable blocks, so DropPath has nothing to act on")
    progress.log(f"{len(blocks)} removable blocks; training {config.epochs} epochs")
    res = fit(model, ds, config, blocks=blocks, progress=progress)
    test_acc = accuracy(model, ds.x_test, ds.y_test)
    val_acc = accuracy(model, ds.x_val, ds.y_val)
    sidecar = {
        "arch": spec.to_json(),
        "input_shape": list(shape),
        "num_classes": ds.num_classes,
        "class_names": ds.class_names,
        "data": {**ds.describe(), "source": stored_source(data)},
        "preprocess": {"layout": "NCHW", "range": [0, 1], "mean": 0.5, "std": 0.5,
                       "note": "pixels scaled to [0,1], then (x - mean) / std"},
        "removed_blocks": removed,
        "blocks": [b.to_json() for b in blocks],
        "params": count_params(model),
        "flops": total_flops,
        "training": {"epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
                     "seed": config.seed, "drop_path_rate": config.drop_path_rate, "schedule": res.schedule,
                     "seconds": round(res.seconds, 2), "history": res.history},
        "statistics": res.stats.summary() if res.stats is not None else None,
        "statistics_sums": res.stats.to_json() if res.stats is not None else None,
        "metrics": {"test_accuracy": test_acc, "val_accuracy": val_acc},
        "lineage": lineage,
    }
    save_model(model, out, sidecar)
    progress.log(f"wrote {out} (test accuracy {test_acc:.4f})")
    return sidecar
