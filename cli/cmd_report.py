"""`compress report`, `compress sweep` and `compress demo` (registered on the shared typer app)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from compress.criteria import CRITERIA, DEFAULT_CRITERION

from .main import app, emit_json, friendly, stdout
from .progress import RichProgress


def _batches(text: str) -> list[int]:
    from compress.errors import CompressError

    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise CompressError(f"--batch must be comma-separated positive integers, got {text!r}")
    return out


COMPACT = ("model", "keep", "blocks", "accuracy %", "Δ points", "FLOPs ratio", "runtime", "batch", "p50 ms",
           "p90 ms", "latency ratio", "speedup")


def _print_report(rep: dict) -> None:
    from compress.reporting import TABLE_COLUMNS, render_table

    threads = ",".join(map(str, rep["settings"].get("threads") or [])) or "?"
    t = Table(title=f"accuracy vs latency: {threads} thread(s), {rep['machine'].get('cpu', '?')} "
                    f"(all columns: report.md)")
    cols = [c for c in TABLE_COLUMNS if c in COMPACT]
    for c in cols:
        t.add_column(c, no_wrap=True)
    for row in render_table(rep):
        t.add_row(*(row[c] for c in cols))
    stdout.print(t)
    for name, path in (rep.get("files") or {}).items():
        stdout.print(f"{name}: {path}")
    if rep.get("failed"):
        for k, err in rep["failed"].items():
            stdout.print(f"[red]keep {k} failed:[/red] {err}")
    stdout.print(f"[bold]{rep['headline']}[/bold]")


def _report_options(threads, batch, warmup, runs, seconds, onednn):
    return {"threads": threads, "batch_sizes": _batches(batch), "warmup": warmup, "min_runs": runs,
            "max_seconds": seconds, "onednn": onednn}


THREADS = typer.Option(1, help="CPU threads per runtime (1 is like a small edge CPU).")
BATCH = typer.Option("1,32", "--batch", help="Batch sizes to time.")
WARMUP = typer.Option(10, help="Untimed runs per model first (at least 10).")
RUNS = typer.Option(100, help="Timed runs per model at least.")
SECONDS = typer.Option(60.0, help="Time budget for the timing, beyond the minimum runs.")
ONEDNN = typer.Option(True, "--onednn/--no-onednn", help="oneDNN on Paddle Inference.")


@app.command()
@friendly
def report(
    models: List[Path] = typer.Argument(..., help="Models to compare: the original and its pruned descendants."),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Directory for report.json/.md/.html, pareto.png."),
    data: Optional[str] = typer.Option(None, help="Test data (default: each sidecar's)."),
    threads: int = THREADS, batch: str = BATCH, warmup: int = WARMUP, runs: int = RUNS, seconds: float = SECONDS,
    onednn: bool = ONEDNN,
    as_json: bool = typer.Option(False, "--json", help="Print report.json."),
):
    """Measure accuracy and latency (Paddle Inference, ONNX Runtime) and write the report."""
    from compress.evaluation import report as report_fn

    rep = report_fn(models, out, data=data, progress=RichProgress(),
                    **_report_options(threads, batch, warmup, runs, seconds, onednn))
    return emit_json(rep) if as_json else _print_report(rep)


@app.command()
@friendly
def sweep(
    model: Path = typer.Argument(..., help="The original model (weights + sidecar)."),
    keep: str = typer.Option("1.0,0.9,0.8,0.7,0.6,0.5", help="Keep ratios, comma-separated."),
    out: Path = typer.Option(Path("sweep"), "--out", "-o", help="Directory for models, exports and the report."),
    criterion: str = typer.Option(DEFAULT_CRITERION, help=f"One of {', '.join(CRITERIA)}."),
    data: Optional[str] = typer.Option(None, help="Healing and test data (default: the sidecar's)."),
    epochs: int = typer.Option(3, min=0, help="Healing epochs per keep ratio."),
    lr: float = typer.Option(5e-4), seed: int = typer.Option(0),
    threads: int = THREADS, batch: str = BATCH, warmup: int = WARMUP, runs: int = RUNS, seconds: float = SECONDS,
    onednn: bool = ONEDNN,
    as_json: bool = typer.Option(False, "--json", help="Print report.json."),
):
    """Prune, heal, export and measure at every keep ratio, then report. Resumable."""
    from compress.healing import HealConfig
    from compress.sweep import parse_keeps, sweep as sweep_fn

    rep = sweep_fn(model, parse_keeps(keep), out, criterion=criterion,
                   heal=HealConfig(epochs=epochs, lr=lr, seed=seed), data=data,
                   report_options=_report_options(threads, batch, warmup, runs, seconds, onednn),
                   progress=RichProgress())
    return emit_json(rep) if as_json else _print_report(rep)


@app.command()
@friendly
def demo(
    out: Path = typer.Option(Path("compress-demo"), "--out", "-o", help="Directory for everything the demo makes."),
    sample: str = typer.Option("vit_tiny", help="Shipped sample model: vit_tiny or resnet_tiny."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json."),
):
    """The main job on the built-in default: sweep a shipped sample model (keep 1.0, 0.75, 0.5) and report."""
    from compress.sweep import demo as demo_fn

    rep = demo_fn(out, sample=sample, progress=RichProgress())
    return emit_json(rep) if as_json else _print_report(rep)
