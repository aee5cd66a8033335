"""`compress sweep`: prune, heal, export and measure at every keep ratio, then report."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from compress.criteria import CRITERIA, DEFAULT_CRITERION
from compress.workflows.prune import HealConfig
from compress.workflows.sweep import parse_keeps, sweep as sweep_model

from ..output import emit_json
from ..progress import RichProgress
from .report import BATCH, ONEDNN, RUNS, SECONDS, THREADS, WARMUP, print_report, report_options


def sweep(
    model: Path = typer.Argument(..., help="The original model (weights + sidecar)."),
    keep: str = typer.Option("1.0,0.9,0.8,0.7,0.6,0.5", help="Keep ratios, comma-separated."),
    out: Path = typer.Option(Path("sweep"), "--out", "-o", help="Directory for models, exports and the report."),
    criterion: str = typer.Option(DEFAULT_CRITERION, help=f"One of {', '.join(CRITERIA)}."),
    data: Optional[str] = typer.Option(None, help="Healing and test data (default: the sidecar's)."),
    epochs: int = typer.Option(3, help="Healing epochs per keep ratio."),
    lr: float = typer.Option(5e-4), seed: int = typer.Option(0),
    threads: int = THREADS, batch: str = BATCH, warmup: int = WARMUP, runs: int = RUNS, seconds: float = SECONDS,
    onednn: bool = ONEDNN,
    as_json: bool = typer.Option(False, "--json", help="Print report.json."),
):
    """Prune, heal, export and measure at every keep ratio, then report. Resumable."""
    rep = sweep_model(model, parse_keeps(keep), out, criterion=criterion,
                      heal=HealConfig(epochs=epochs, lr=lr, seed=seed), data=data,
                      report_options=report_options(threads, batch, warmup, runs, seconds, onednn),
                      progress=RichProgress())
    return emit_json(rep) if as_json else print_report(rep)
