"""`compress demo`: the main job on a shipped sample model."""
from __future__ import annotations

from pathlib import Path

import typer

from compress.workflows.sweep import demo as run_demo

from ..output import emit_json
from ..progress import RichProgress
from .report import print_report


def demo(
    out: Path = typer.Option(Path("compress-demo"), "--out", "-o", help="Directory for everything the demo makes."),
    sample: str = typer.Option("vit_tiny", help="Shipped sample model: vit_tiny or resnet_tiny."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json."),
):
    """The main job on the built-in default: sweep a shipped sample model (keep 1.0, 0.75, 0.5) and report."""
    rep = run_demo(out, sample=sample, progress=RichProgress())
    return emit_json(rep) if as_json else print_report(rep)
