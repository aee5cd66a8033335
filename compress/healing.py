"""Pruning and healing: remove the chosen blocks, then fine-tune the shortened
network with knowledge distillation from the unpruned one.

Healing scales out on Paddle's own launcher: run the same command under
``python -m paddle.distributed.launch --nproc_per_node N``; each rank trains on
its shard of every global batch inside ``paddle.DataParallel`` and only rank 0
writes files.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .blocks import find_blocks
from .data import stored_source
from .criteria import CRITERIA, DATA_CRITERIA, DEFAULT_CRITERION, Context, select
from .errors import CompressError
from .fileio import sha256
from .flops import count_flops, count_params
from .loading import check_num_classes, check_weights_path, load_model, save_model
from .progress import NULL, Progress
from .schedules import n_keep
from .surgery import remove_blocks
from .training import FitConfig, accuracy, fit


@dataclass
class HealConfig:
    epochs: int = 5
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.01
    distill: bool = True
    temperature: float = 2.0
    alpha: float = 0.5
    patience: int = 2
    seed: int = 0


def world() -> tuple[int, int]:
    """(rank, world size) under paddle.distributed.launch, else (0, 1)."""
    n = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    return (int(os.environ.get("PADDLE_TRAINER_ID", "0")), n) if n > 1 else (0, 1)


def default_out(model_path, keep: float | None, n_kept: int) -> Path:
    p = Path(model_path)
    tag = f"keep{keep:g}" if keep is not None else f"{n_kept}blocks"
    return p.with_name(f"{p.stem}.{tag}{p.suffix}")


def plan(bundle, keep=None, blocks=None, criterion=DEFAULT_CRITERION, seed=0, data=None) -> dict:
    """Which blocks go, and what that saves (parameters, FLOPs), without touching anything."""
    model, shape = bundle.model, bundle.input_shape
    found = find_blocks(model, shape)
    L = len(found)
    if L == 0:
        raise CompressError("the model has no removable blocks (shape-preserving elements of LayerList/Sequential)")
    if blocks is not None:
        if keep is not None:
            raise CompressError("give --keep or --blocks, not both")
        if len(set(blocks)) != len(blocks):
            raise CompressError(f"--blocks repeats a block: {','.join(map(str, blocks))}")
        bad = [b for b in blocks if not 0 <= b < L]
        if bad:
            raise CompressError(f"--blocks {','.join(map(str, bad))} out of range: the model has blocks 0..{L - 1}")
        if len(blocks) >= L:
            raise CompressError(f"--blocks would remove all {L} blocks; keep at least one")
        remove = sorted(blocks)
        criterion = "explicit"
    else:
        if keep is None:
            raise CompressError("give --keep K (0 < K <= 1) or --blocks i,j,...")
        if not 0.0 < keep <= 1.0:
            raise CompressError(f"--keep must be in (0, 1], got {keep}")
        if keep * L < 0.5:
            raise CompressError(f"--keep {keep} of {L} blocks leaves no block; the smallest keep is {0.5 / L:.3f}")
        n_remove = L - n_keep(L, keep)
        if criterion not in CRITERIA:
            raise CompressError(f"unknown criterion {criterion!r}: use one of {', '.join(CRITERIA)}")
        stats = bundle.sidecar.get("statistics") or None
        by_path = {s["block"]: s for s in stats} if stats else {}
        ctx = Context(blocks=found, stats=[by_path.get(b.path) for b in found] if stats else None,
                      schedule=((bundle.sidecar.get("training") or {}).get("schedule") or {}).get("name"),
                      model=model, input_shape=shape, data=data, seed=seed)
        remove = select(criterion, ctx, n_remove)
    total, per = count_flops(model, shape, found)
    params = count_params(model)
    gone = [found[i] for i in remove]
    return {
        "blocks_before": L, "blocks_after": L - len(remove), "keep": keep, "criterion": criterion, "seed": seed,
        "remove": remove, "remove_paths": [b.path for b in gone],
        "params_before": params, "params_after": params - sum(b.params for b in gone),
        "flops_before": total, "flops_after": total - sum(per[b.path] for b in gone),
    }


def prune(model_path, keep: float | None = None, blocks: list[int] | None = None,
          criterion: str = DEFAULT_CRITERION, out=None, data: str | None = None,
          heal: HealConfig | None = None, dry_run: bool = False, export_dir=None,
          progress: Progress = NULL) -> dict:
    """The ``prune`` command: plan, remove, heal with distillation, write ``out`` (+ sidecar), optionally export."""
    import paddle

    from .data import load_data

    heal = heal or HealConfig()
    model_path = check_weights_path(model_path)
    finite = all(math.isfinite(v) for v in (heal.alpha, heal.temperature, heal.lr, heal.weight_decay))
    if heal.epochs < 0 or not finite or not 0.0 <= heal.alpha <= 1.0 or heal.temperature <= 0 or heal.lr <= 0 \
            or heal.weight_decay < 0:
        raise CompressError("--epochs must be >= 0, --alpha in [0, 1], --temperature > 0, --lr > 0 "
                            "(finite numbers)")
    if export_dir is not None:
        from .export import check_out_dir

        check_out_dir(Path(export_dir), False, model_path, flag="--export")  # refuse a bad one before any work
    teacher = load_model(model_path)
    source = data or (teacher.sidecar.get("data") or {}).get("source")
    needs_data = heal.epochs > 0 or criterion in DATA_CRITERIA
    if needs_data and not source:
        raise CompressError("healing needs data: pass --data (the model's sidecar names none), or --epochs 0")
    ds = load_data(source, teacher.input_shape) if source else None
    if ds is not None:
        check_num_classes(teacher.model, teacher.input_shape, ds.num_classes)
    p = plan(teacher, keep, blocks, criterion, heal.seed, ds)
    if out is None:
        out = default_out(model_path, keep, p["blocks_after"])
    out = check_weights_path(out)
    if out.resolve() == model_path.resolve():
        raise CompressError(f"--out {out} would overwrite the input model; choose another path")
    p["out"] = str(out)
    if dry_run:
        return {"plan": p, "written": False}

    rank, n_ranks = world()
    wrap = None
    if n_ranks > 1:
        paddle.distributed.init_parallel_env()
        wrap = paddle.DataParallel
    if rank != 0:
        progress = NULL
    student = load_model(model_path).model
    remove_blocks(student, p["remove_paths"])
    acc = {}
    if ds is not None:
        acc["original"] = accuracy(teacher.model, ds.x_test, ds.y_test)
        acc["after_removal"] = accuracy(student, ds.x_test, ds.y_test)
        progress.log(f"test accuracy: original {acc['original']:.4f}, after removing "
                     f"{len(p['remove'])} blocks {acc['after_removal']:.4f}")
    history, best_epoch = [], None
    if heal.epochs > 0:
        cfg = FitConfig(epochs=heal.epochs, batch_size=heal.batch_size, lr=heal.lr, weight_decay=heal.weight_decay,
                        seed=heal.seed, alpha=heal.alpha, temperature=heal.temperature,
                        patience=heal.patience, keep_best=True)
        res = fit(student, ds, cfg, teacher=teacher.model if heal.distill else None, progress=progress,
                  shard=(rank, n_ranks), wrap=wrap)
        history, best_epoch = res.history, res.best_epoch
        acc["after_healing"] = accuracy(student, ds.x_test, ds.y_test)
        progress.log(f"test accuracy after healing: {acc['after_healing']:.4f} (best epoch {best_epoch})")
    kept_blocks = find_blocks(student, teacher.input_shape)
    total, per = count_flops(student, teacher.input_shape, kept_blocks)
    for b in kept_blocks:
        b.flops = per[b.path]
    parent = teacher.sidecar
    stats = parent.get("statistics")
    kept_paths = {b.path for b in kept_blocks}
    all_removed = list(parent.get("removed_blocks", [])) + p["remove_paths"]
    n_root = len(kept_blocks) + len(all_removed)
    step = {"parent": str(model_path.resolve()), "parent_sha256": sha256(model_path), "keep": keep,
            "keep_total": len(kept_blocks) / n_root, "criterion": p["criterion"], "seed": heal.seed,
            "removed": p["remove_paths"], "blocks_before": p["blocks_before"], "blocks_after": p["blocks_after"],
            "healing": {**asdict(heal), "best_epoch": best_epoch, "history": history,
                        "data": stored_source(source)},
            "accuracy": acc}
    sidecar = {k: v for k, v in parent.items() if k not in ("format", "statistics_sums")}
    sidecar.update({
        "removed_blocks": all_removed,
        "blocks": [b.to_json() for b in kept_blocks],
        "params": count_params(student), "flops": total,
        "statistics": [s for s in stats if s["block"] in kept_paths] if stats else None,
        "metrics": {"test_accuracy": acc.get("after_healing", acc.get("after_removal")),
                    "accuracy_original": acc.get("original"), "accuracy_after_removal": acc.get("after_removal"),
                    "accuracy_after_healing": acc.get("after_healing")},
        "lineage": list(parent.get("lineage", [])) + [step],
    })
    result = {"plan": p, "accuracy": acc, "best_epoch": best_epoch, "written": rank == 0, "out": str(out)}
    if rank == 0:
        save_model(student, out, sidecar)
        progress.log(f"wrote {out}")
        if export_dir is not None:
            from .export import export_model

            result["export"] = export_model(out, export_dir, progress=progress)
    return result
