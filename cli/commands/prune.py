"""`compress prune`: remove blocks, heal by distillation."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from compress.pruning.criteria import CRITERIA, DEFAULT_CRITERION
from compress.data import DataOptions
from compress.common.errors import CompressError
from compress.workflows.prune import DISTILL_TARGETS, HealConfig, prune as prune_model

from ..output import emit_json, stdout
from ..options import AUGMENT_HELP, BLOCKS_FROM_HELP, GRANULARITY_HELP, WORKERS
from ..progress import RichProgress


def _parse_blocks(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise CompressError(f"--blocks must be comma-separated block indices, got {text!r}") from None


def _pct(v):
    return "-" if v is None else f"{v * 100:.2f}%"


def prune(
    model: Path = typer.Argument(..., help="A model written by compress (weights + sidecar)."),
    keep: Optional[float] = typer.Option(None, help="Share of removable blocks to keep, in (0, 1]; round(K*L) blocks stay (halves round up), at least one."),
    keep_flops: Optional[float] = typer.Option(None, "--keep-flops", help="FLOPs budget in (0, 1]: remove blocks until at most this share of the model's FLOPs stays, cheapest criterion score per FLOP first."),
    blocks: Optional[str] = typer.Option(None, help="Explicit block indices to remove, e.g. 3,5,7 (see `compress blocks`); under --granularity branch, unit indices (blocks in order, each split into its branches)."),
    criterion: str = typer.Option(DEFAULT_CRITERION, help=f"How blocks are chosen: {', '.join(CRITERIA)}."),
    blocks_from: Optional[str] = typer.Option(None, "--blocks-from", help=BLOCKS_FROM_HELP
                                              + " Default: the pattern in the model's sidecar, if any."),
    granularity: Optional[str] = typer.Option(None, help=GRANULARITY_HELP + " Default: the model's (as trained)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output weights (default: MODEL.keepK.pdparams, MODEL.flopsF.pdparams)."),
    data: Optional[str] = typer.Option(None, help="Healing data (default: the sidecar's)."),
    epochs: int = typer.Option(HealConfig.epochs, help="Healing epochs (0: prune without healing)."),
    batch_size: int = typer.Option(HealConfig.batch_size),
    lr: float = typer.Option(HealConfig.lr),
    distill: bool = typer.Option(HealConfig.distill, "--distill/--no-distill", help="Distil from the unpruned model while healing."),
    temperature: float = typer.Option(HealConfig.temperature),
    alpha: float = typer.Option(HealConfig.alpha, help="Weight of the distillation term (1 - alpha on the task loss)."),
    distill_target: str = typer.Option(HealConfig.distill_target, "--distill-target", help="What healing distils: " + "; ".join(
                                       f"{k}: {v}" for k, v in DISTILL_TARGETS.items()) + "."),
    patience: int = typer.Option(HealConfig.patience, help="Early stopping: epochs without a better val accuracy."),
    seed: int = typer.Option(HealConfig.seed),
    augment: Optional[str] = typer.Option(None, "--augment", help="Healing's augmentation (default: the one the model "
                                          "was trained with, as its sidecar records). " + AUGMENT_HELP.split(". ", 1)[0] + "."),
    workers: Optional[int] = WORKERS,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; write nothing."),
    export: Optional[Path] = typer.Option(None, "--export", help="Export the healed model to this directory."),
    resume: bool = typer.Option(False, "--resume", help="Go on healing from the checkpoint an interrupted run with "
                                "the same command left next to --out (OUT.ckpt/, saved after every epoch)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Remove the blocks the network learned to live without, then heal it by distillation."""
    cfg = HealConfig(epochs=epochs, batch_size=batch_size, lr=lr, distill=distill, temperature=temperature,
                     alpha=alpha, patience=patience, seed=seed, distill_target=distill_target)
    res = prune_model(model, keep=keep, blocks=_parse_blocks(blocks), criterion=criterion, out=out, data=data,
                      heal=cfg, dry_run=dry_run, export_dir=export, progress=RichProgress(),
                      blocks_from=blocks_from, keep_flops=keep_flops,
                      data_options=DataOptions(augment=augment, workers=workers), resume=resume,
                      granularity=granularity)
    if not res.written and not dry_run:
        return  # a non-zero rank under paddle.distributed.launch
    if as_json:
        return emit_json(res)
    _print_plan(res.plan, dry_run)
    if dry_run:
        stdout.print("dry run: nothing written")
        return
    acc, check = res.accuracy, res.surgery_check
    stdout.print(f"surgery self-check: max abs diff {check.max_abs_diff:.2g} on {check.images} images "
                 f"(allowed {check.tolerance:g})")
    stdout.print(f"test accuracy: original {_pct(acc.original)}, after removal {_pct(acc.after_removal)}, "
                 f"after healing {_pct(acc.after_healing)}")
    stdout.print(f"wrote {res.out}")
    if res.export is not None:
        stdout.print(f"exported to {export}")


def _print_plan(p, dry_run: bool) -> None:
    what = "units" if p.granularity == "branch" else "blocks"
    t = Table(title=f"{'plan' if dry_run else 'pruned'}: {p.blocks_before} -> {p.blocks_after} {what} "
                    f"({p.criterion})", show_header=True)
    t.add_column("")
    t.add_column("before", justify="right")
    t.add_column("after", justify="right")
    t.add_row(what, str(p.blocks_before), str(p.blocks_after))
    t.add_row("params", f"{p.params_before:,}", f"{p.params_after:,}")
    t.add_row("FLOPs", f"{p.flops_before:,}", f"{p.flops_after:,}")
    stdout.print(t)
    budget = f" (budget {p.keep_flops:g})" if p.keep_flops is not None else ""
    stdout.print(f"FLOPs ratio: {p.flops_ratio:.3f}{budget}")
    if p.granularity == "branch":
        gone = [f"{u.name} ({u.path}, {u.flops / p.flops_before:.1%})" for u in p.removed]
        stdout.print(f"removed units: {', '.join(gone) or 'none'}")
        if p.remove_paths:
            stdout.print(f"blocks removed whole (every branch goes): {', '.join(p.remove_paths)}")
        return
    gone = [f"{u.index} ({u.path}, {u.flops:,} FLOPs, {u.flops / p.flops_before:.1%})" for u in p.removed]
    stdout.print(f"removed blocks: {', '.join(gone) or 'none'}")
