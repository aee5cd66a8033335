"""The ``compress`` command: a thin typer layer over the ``compress`` library.

Each command parses its flags, calls one library function, shows progress on
stderr and prints results on stdout (``--json`` for machines).
"""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Optional

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("POLYGRAPHY_AUTOINSTALL_DEPS", "0")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import compress  # noqa: E402
from compress.errors import CompressError  # noqa: E402

from .progress import RichProgress, stderr  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Stochastic-depth block pruning for PaddlePaddle vision models.")
stdout = Console(highlight=False, width=None if sys.stdout.isatty() else 180)


def friendly(fn):
    """Turn CompressError (and any other failure) into one line on stderr and a non-zero exit."""
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        import warnings

        warnings.filterwarnings("ignore")
        try:
            return fn(*args, **kwargs)
        except CompressError as e:
            stderr.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - last line of defence: never a traceback
            if os.environ.get("COMPRESS_DEBUG"):
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            stderr.print(f"[red]error:[/red] {type(e).__name__}: {msg} (set COMPRESS_DEBUG=1 for a traceback)",
                         highlight=False, soft_wrap=True)
            raise typer.Exit(1)
    return inner


def emit_json(obj) -> None:
    from compress.fileio import _json_default

    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")


def version_cb(value: bool):
    if value:
        stdout.print(f"compress {compress.__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=version_cb, is_eager=True,
                                      help="Print the version and exit."),
         trust_arch: bool = typer.Option(False, "--trust-arch",
                                         help="Trust the model code (a .py file, a factory function) that a "
                                              "sidecar names, and remember it. Weight files never run code.")):
    if trust_arch:
        os.environ["COMPRESS_TRUST_ARCH"] = "1"


def _fmt(v, spec=".4f"):
    return "-" if v is None else format(v, spec)


# --------------------------------------------------------------------------- blocks
@app.command()
@friendly
def blocks(
    model: Optional[Path] = typer.Argument(None, help="A .pdparams/.safetensors model (with its sidecar)."),
    arch: Optional[str] = typer.Option(None, help="Shipped name, module:callable or file.py:callable."),
    arch_kwargs: Optional[str] = typer.Option(None, help="JSON object of keyword arguments for --arch."),
    input_shape: Optional[str] = typer.Option(None, help="C,H,W (default: the architecture's or 3,224,224)."),
    num_classes: Optional[int] = typer.Option(None, help="Classes, for shipped architectures."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """List the removable blocks: index, path, parameters, share of FLOPs, DropPath kind."""
    from compress.blocks import describe_blocks
    from compress.loading import parse_input_shape, parse_kwargs

    info = describe_blocks(model=model, arch=arch, arch_kwargs=parse_kwargs(arch_kwargs),
                           input_shape=parse_input_shape(input_shape) if input_shape else None,
                           num_classes=num_classes)
    if as_json:
        return emit_json(info)
    t = Table(title=f"{info['arch']}: {len(info['blocks'])} removable blocks, "
                    f"{info['params']:,} params, {info['flops'] / 1e6:.2f} MFLOPs")
    for col in ("#", "path", "params", "FLOPs share", "DropPath"):
        t.add_column(col, justify="right" if col in ("#", "params", "FLOPs share") else "left")
    for b in info["blocks"]:
        t.add_row(str(b["index"]), b["path"], f"{b['params']:,}", f"{b['flops_share'] * 100:.1f}%", b["droppath"])
    stdout.print(t)


# --------------------------------------------------------------------------- train
@app.command()
@friendly
def train(
    init: Optional[Path] = typer.Argument(None, help="Optional .pdparams to fine-tune (its sidecar gives the architecture)."),
    arch: Optional[str] = typer.Option(None, help="Shipped name, module:callable or file.py:callable."),
    arch_kwargs: Optional[str] = typer.Option(None, help="JSON object of keyword arguments for --arch."),
    data: str = typer.Option("digits", help="'digits', an image-folder directory or an .npz with x and y."),
    input_shape: Optional[str] = typer.Option(None, help="C,H,W the images are resized to."),
    epochs: int = typer.Option(10, min=0),
    batch_size: int = typer.Option(64, min=1),
    lr: float = typer.Option(2e-3),
    weight_decay: float = typer.Option(0.05),
    drop_path_rate: float = typer.Option(0.1, help="Mean drop rate d in [0, 1)."),
    schedule: str = typer.Option("linear", help="uniform, linear or adaptive."),
    target_keep: Optional[float] = typer.Option(None, help="adaptive: the keep ratio you will prune to."),
    warmup_epochs: Optional[int] = typer.Option(None, help="adaptive: epochs at the mean rate before adapting."),
    max_rate: float = typer.Option(0.7, help="adaptive with --target-keep: final drop rate of the targeted blocks."),
    seed: int = typer.Option(0),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the weights (.pdparams or .safetensors)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Train or fine-tune with DropPath, recording survival statistics per block."""
    from compress.loading import parse_input_shape, parse_kwargs
    from compress.schedules import SCHEDULES
    from compress.training import FitConfig, train as train_fn

    if schedule not in SCHEDULES:
        raise CompressError(f"unknown schedule {schedule!r}: use one of {', '.join(SCHEDULES)}")
    cfg = FitConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                    drop_path_rate=drop_path_rate, schedule=schedule, target_keep=target_keep,
                    warmup_epochs=warmup_epochs, max_rate=max_rate)
    sc = train_fn(out, arch=arch, arch_kwargs=parse_kwargs(arch_kwargs), init=init, data=data,
                  input_shape=parse_input_shape(input_shape) if input_shape else None, config=cfg,
                  progress=RichProgress())
    summary = {"out": str(out), "test_accuracy": sc["metrics"]["test_accuracy"],
               "val_accuracy": sc["metrics"]["val_accuracy"], "blocks": len(sc["blocks"]),
               "seconds": sc["training"]["seconds"]}
    if as_json:
        return emit_json(summary)
    stdout.print(f"wrote {out}: test accuracy {summary['test_accuracy'] * 100:.2f}%, "
                 f"{summary['blocks']} blocks, {summary['seconds']:.1f} s")


# --------------------------------------------------------------------------- stats
@app.command()
@friendly
def stats(
    model: Path = typer.Argument(..., help="A model written by compress train."),
    plot: Optional[Path] = typer.Option(None, help="Write a bar chart of survival and importance (PNG)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Show the survival statistics recorded per block while training."""
    from compress.statistics import read_stats, plot_stats

    info = read_stats(model)
    if plot is not None:
        plot_stats(info, plot)
    if as_json:
        return emit_json(info)
    t = Table(title=f"{model.name}: survival statistics ({info['schedule'] or 'no DropPath'})")
    for col in ("block", "survival", "importance", "± se", "loss kept", "loss dropped", "residual ratio"):
        t.add_column(col, justify="left" if col == "block" else "right")
    for b in info["blocks"]:
        t.add_row(b["block"], _fmt(b["survival_rate"], ".3f"), _fmt(b["importance"]), _fmt(b["importance_stderr"]),
                  _fmt(b["loss_kept"]), _fmt(b["loss_dropped"]), _fmt(b["residual_ratio"], ".3f"))
    stdout.print(t)
    if plot is not None:
        stdout.print(f"plot: {plot}")


# Commands that live in their own modules register themselves on `app`.
from . import cmd_export, cmd_prune, cmd_report  # noqa: E402,F401


def run():
    """Console entry point. Native libraries (Paddle's C++ core, paddle2onnx) print to file
    descriptor 1; route that to stderr so stdout carries only results (and stays valid --json)."""
    import io

    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(os.fdopen(real_stdout, "wb"), line_buffering=True)
    try:
        app()
    finally:
        sys.stdout.flush()
