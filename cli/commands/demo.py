"""`compress demo`: the main job on a shipped sample model."""
from __future__ import annotations

from pathlib import Path

import typer

from compress.workflows.sweep import demo as run_demo

from ..options import library_default
from ..output import emit_json
from ..progress import RichProgress
from .report import print_report


def demo(
    out: Path = typer.Option(Path(library_default(run_demo, "out_dir")), "--out", "-o", help="Directory for everything the demo makes."),
    sample: str = typer.Option(library_default(run_demo, "sample"), help="Shipped sample model: vit_tiny or resnet_tiny."),
    data: str = typer.Option(library_default(run_demo, "data"), help="Built-in data: digits (the shipped samples' data), or "
                                            "shapes[:COUNT[:SEED]] (the sample's architecture is trained on it first, "
                                            "in RGB; e.g. shapes:2000)."),
    train_epochs: int = typer.Option(library_default(run_demo, "train_epochs"), help="With --data other than digits: training epochs."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json."),
):
    """The main job on a built-in source: sweep a shipped sample model (keep 1.0, 0.75, 0.5) and report."""
    rep = run_demo(out, sample=sample, progress=RichProgress(), data=data, train_epochs=train_epochs)
    return emit_json(rep) if as_json else print_report(rep)
