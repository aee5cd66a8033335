"""`compress sweep`: prune, heal, export and measure at every keep ratio, then report."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from compress.pruning.criteria import CRITERIA, DEFAULT_CRITERION
from compress.workflows.prune import HealConfig
from compress.workflows.sweep import SWEEP_HEAL_EPOCHS, parse_keeps, sweep as sweep_model

from ..options import (ATOL, INT8, INT8_FORCE, INT8_SCHEMES, INT8_SECONDS, MAX_ACC_DROP, MIN_ARGMAX, MIN_TOP5, RTOL,
                       export_options)
from ..output import emit_json
from ..progress import RichProgress
from .report import BATCH, ONEDNN, RUNS, SECONDS, THREADS, WARMUP, print_report, report_options


def sweep(
    model: Path = typer.Argument(..., help="The original model (weights + sidecar)."),
    keep: Optional[str] = typer.Option(None, help="Keep ratios, comma-separated (default 1.0,0.9,0.8,0.7,0.6,0.5)."),
    keep_flops: Optional[str] = typer.Option(None, "--keep-flops", help="FLOPs budgets instead of keep ratios, comma-separated, e.g. 1.0,0.8,0.6,0.4 (points named F0.8, ...)."),
    out: Path = typer.Option(Path("sweep"), "--out", "-o", help="Directory for models, exports and the report."),
    criterion: str = typer.Option(DEFAULT_CRITERION, help=f"One of {', '.join(CRITERIA)}."),
    data: Optional[str] = typer.Option(None, help="Healing and test data (default: the sidecar's)."),
    epochs: int = typer.Option(SWEEP_HEAL_EPOCHS, help="Healing epochs per keep ratio."),
    lr: float = typer.Option(HealConfig.lr), seed: int = typer.Option(HealConfig.seed),
    threads: int = THREADS, batch: str = BATCH, warmup: int = WARMUP, runs: int = RUNS, seconds: float = SECONDS,
    onednn: bool = ONEDNN,
    int8: bool = INT8, int8_force: bool = INT8_FORCE, int8_schemes: Optional[str] = INT8_SCHEMES,
    int8_seconds: float = INT8_SECONDS,
    max_acc_drop: float = MAX_ACC_DROP, atol: float = ATOL, rtol: float = RTOL,
    min_argmax_agreement: float = MIN_ARGMAX, min_top5_agreement: float = MIN_TOP5,
    as_json: bool = typer.Option(False, "--json", help="Print report.json."),
):
    """Prune, heal, export and measure at every keep ratio, then report. Resumable."""
    export = export_options(atol=atol, rtol=rtol, min_argmax_agreement=min_argmax_agreement,
                            min_top5_agreement=min_top5_agreement, int8=int8, int8_force=int8_force,
                            int8_schemes=int8_schemes, int8_seconds=int8_seconds,
                            max_acc_drop=max_acc_drop)
    rep = sweep_model(model, parse_keeps(keep) if keep is not None else None, out, criterion=criterion,
                      heal=HealConfig(epochs=epochs, lr=lr, seed=seed), data=data,
                      report_options=report_options(threads, batch, warmup, runs, seconds, onednn),
                      progress=RichProgress(), export=export,
                      keep_flops=parse_keeps(keep_flops, "keep_flops") if keep_flops is not None else None)
    return emit_json(rep) if as_json else print_report(rep)
