"""`compress blocks`: a model's removable blocks."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from compress.models import parse_input_shape, parse_kwargs
from compress.workflows.inspect import describe_blocks

from ..output import emit_json, stdout


def blocks(
    model: Optional[Path] = typer.Argument(None, help="A .pdparams/.safetensors model (with its sidecar)."),
    arch: Optional[str] = typer.Option(None, help="Shipped name, module:callable or file.py:callable."),
    arch_kwargs: Optional[str] = typer.Option(None, help="JSON object of keyword arguments for --arch."),
    input_shape: Optional[str] = typer.Option(None, help="C,H,W (default: the architecture's or 3,224,224)."),
    num_classes: Optional[int] = typer.Option(None, help="Classes, for shipped architectures."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """List the removable blocks: index, path, parameters, share of FLOPs, DropPath kind."""
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
