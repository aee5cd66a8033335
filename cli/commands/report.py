"""`compress report`: accuracy vs latency on Paddle Inference and ONNX Runtime; with the
report printing and timing options that `sweep` and `demo` share."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from compress.common.errors import CompressError
from compress.measure.latency import MIN_WARMUP, TIMING
from compress.measure.summary import TABLE_COLUMNS, render_table
from compress.workflows.report import report as report_models

from ..options import (ATOL, INT8, INT8_FORCE, INT8_SCHEMES, INT8_SECONDS, MAX_ACC_DROP, MIN_ARGMAX, MIN_TOP5, RTOL,
                       export_options)
from ..output import emit_json, stdout
from ..progress import RichProgress

COMPACT = ("model", "keep", "blocks", "accuracy %", "Δ points", "Δ images", "FLOPs ratio", "runtime", "batch", "p50 ms",
           "p90 ms", "latency ratio", "speedup")

THREADS = typer.Option(TIMING.threads, help="CPU threads per runtime (1 is like a small edge CPU).")
BATCH = typer.Option(",".join(map(str, TIMING.batch_sizes)), "--batch", help="Batch sizes to time.")
WARMUP = typer.Option(TIMING.warmup, help=f"Untimed runs per model first (at least {MIN_WARMUP}).")
RUNS = typer.Option(TIMING.min_runs, help="Timed runs per model at least.")
SECONDS = typer.Option(TIMING.max_seconds, help="Time budget for the timing, beyond the minimum runs.")
ONEDNN = typer.Option(TIMING.onednn, "--onednn/--no-onednn", help="oneDNN on Paddle Inference.")


def _batches(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CompressError(f"--batch must be comma-separated integers, got {text!r}") from None


def report_options(threads, batch, warmup, runs, seconds, onednn) -> dict:
    """The timing flags as the library's ``report`` parameters."""
    return {"threads": threads, "batch_sizes": _batches(batch), "warmup": warmup, "min_runs": runs,
            "max_seconds": seconds, "onednn": onednn}


def print_report(rep: dict) -> None:
    """The main columns as a table, the files written, failed sweep points and the headline."""
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
    for k, err in (rep.get("failed") or {}).items():
        stdout.print(f"[red]keep {k} failed:[/red] {err}")
    stdout.print(f"[bold]{rep['headline']}[/bold]")


def report(
    models: List[Path] = typer.Argument(..., help="Models to compare: the original and its pruned descendants, as "
                                        "weights files or as export directories (export, prune --export), "
                                        "which are timed where they are when they verify."),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Directory for report.json/.md/.html, pareto.png."),
    data: Optional[str] = typer.Option(None, help="Test data (default: each sidecar's)."),
    threads: int = THREADS, batch: str = BATCH, warmup: int = WARMUP, runs: int = RUNS, seconds: float = SECONDS,
    onednn: bool = ONEDNN,
    int8: bool = INT8, int8_force: bool = INT8_FORCE, int8_schemes: Optional[str] = INT8_SCHEMES,
    int8_seconds: float = INT8_SECONDS,
    max_acc_drop: float = MAX_ACC_DROP, atol: float = ATOL, rtol: float = RTOL,
    min_argmax_agreement: float = MIN_ARGMAX, min_top5_agreement: float = MIN_TOP5,
    as_json: bool = typer.Option(False, "--json", help="Print report.json."),
):
    """Measure accuracy and latency (Paddle Inference, ONNX Runtime; INT8 with --int8) and write the report."""
    export = export_options(atol=atol, rtol=rtol, min_argmax_agreement=min_argmax_agreement,
                            min_top5_agreement=min_top5_agreement, int8=int8, int8_force=int8_force,
                            int8_schemes=int8_schemes, int8_seconds=int8_seconds,
                            max_acc_drop=max_acc_drop)
    rep = report_models(models, out, data=data, progress=RichProgress(), export=export,
                        **report_options(threads, batch, warmup, runs, seconds, onednn))
    return emit_json(rep) if as_json else print_report(rep)
