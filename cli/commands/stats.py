"""`compress stats`: the survival statistics recorded per block while training."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from compress.workflows.inspect import plot_stats, read_stats

from ..output import emit_json, fmt, stdout


def stats(
    model: Path = typer.Argument(..., help="A model written by compress train."),
    plot: Optional[Path] = typer.Option(None, help="Write a bar chart of survival and importance (PNG)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Show the survival statistics recorded per block (or per branch) while training."""
    info = read_stats(model)
    if plot is not None:
        plot_stats(info, plot)
    if as_json:
        return emit_json(info)
    t = Table(title=f"{model.name}: survival statistics ({info['schedule'] or 'no DropPath'})")
    unit = "unit" if info["granularity"] == "branch" else "block"
    for col in (unit, "survival", "importance", "± se", "loss kept", "loss dropped", "residual ratio"):
        t.add_column(col, justify="left" if col == unit else "right")
    for b in info["blocks"]:
        t.add_row(b["block"], fmt(b["survival_rate"], ".3f"), fmt(b["importance"]), fmt(b["importance_stderr"]),
                  fmt(b["loss_kept"]), fmt(b["loss_dropped"]), fmt(b["residual_ratio"], ".3f"))
    stdout.print(t)
    if plot is not None:
        stdout.print(f"plot: {plot}")
