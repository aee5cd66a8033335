"""`compress blocks`: a model's removable blocks (and, with --verbose, why the other layers are not)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from compress.model.bundle import parse_input_shape, parse_kwargs
from compress.workflows.inspect import describe_blocks

from ..options import BLOCKS_FROM_HELP
from ..output import emit_json, stdout, with_flags

SHOWN_PER_GROUP = 12


def blocks(
    model: Optional[Path] = typer.Argument(None, help="A .pdparams/.safetensors model (with its sidecar)."),
    arch: Optional[str] = typer.Option(None, help="Shipped name, module:callable or file.py:callable."),
    arch_kwargs: Optional[str] = typer.Option(None, help="JSON object of keyword arguments for --arch."),
    input_shape: Optional[str] = typer.Option(None, help="C,H,W (default: the architecture's or 3,224,224)."),
    num_classes: Optional[int] = typer.Option(None, help="Classes, for shipped architectures."),
    blocks_from: Optional[str] = typer.Option(None, "--blocks-from", help=BLOCKS_FROM_HELP),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True,
                                help="Also list the rejected candidates, grouped by reason (-vv: every sublayer)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (rejected candidates included)."),
):
    """List the removable blocks (index, path, parameters, share of FLOPs, skip connection, DropPath kind) and
    their branches (attention / MLP: one per DropPath call of a block's own DropPath)."""
    info = describe_blocks(model=model, arch=arch, arch_kwargs=parse_kwargs(arch_kwargs),
                           input_shape=parse_input_shape(input_shape) if input_shape else None,
                           num_classes=num_classes, blocks_from=blocks_from, all_rejected=verbose > 1)
    if as_json:
        return emit_json(info)
    how = f" (picked by --blocks-from {info['blocks_from']})" if info["blocks_from"] else ""
    t = Table(title=f"{info['arch']}: {len(info['blocks'])} removable blocks{how}, "
                    f"{info['params']:,} params, {info['flops'] / 1e6:.2f} MFLOPs")
    for col in ("#", "path", "params", "FLOPs share", "skip", "DropPath"):
        t.add_column(col, justify="right" if col in ("#", "params", "FLOPs share") else "left")
    for b in info["blocks"]:
        skip = " + ".join(b["skip"]) + (" (no skip connection)" if not b["residual"] else "")
        t.add_row(str(b["index"]), b["path"], f"{b['params']:,}", f"{b['flops_share'] * 100:.1f}%", skip or "-",
                  b["droppath"])
    if info["blocks"]:
        stdout.print(t)
        if info["branches"]:
            _print_branches(info)
    else:
        stdout.print(f"{info['arch']}: no removable blocks: {with_flags(info['message'])}", soft_wrap=True)
    if verbose:
        _print_rejected(info)


def _print_branches(info: dict) -> None:
    t = Table(title=f"{len(info['branches'])} branches (the units of --granularity branch; blocks without their own "
                    "DropPath stay whole; # is the unit number `prune --granularity branch --blocks` takes)")
    for col in ("#", "unit", "kind", "depth", "body", "DropPath call", "params", "FLOPs share"):
        t.add_column(col, justify="right" if col in ("#", "depth", "params", "FLOPs share") else "left")
    for b in info["branches"]:
        t.add_row(str(b["index"]), b["unit"], b["kind"], str(b["block"]), ", ".join(b["body"]), f"{b['droppath']} #{b['call']}",
                  f"{b['params']:,}", f"{b['flops_share'] * 100:.1f}%")
    stdout.print(t)


def _print_rejected(info: dict) -> None:
    for g in info["rejected_groups"]:
        t = Table(title=f"not blocks: {g['title']} ({len(g['rejected'])})", show_header=False, title_justify="left")
        t.add_column("path", no_wrap=True)
        t.add_column("reason")
        for r in g["rejected"][:SHOWN_PER_GROUP]:
            t.add_row(r["path"], r["reason"])
        if len(g["rejected"]) > SHOWN_PER_GROUP:
            t.add_row(f"... {len(g['rejected']) - SHOWN_PER_GROUP} more", "(--json lists all)")
        stdout.print(t)
    if info["rejected_not_grouped"]:
        stdout.print(f"{info['rejected_not_grouped']} more sublayers not listed: leaf layers (conv, norm, activation), "
                     "the insides of blocks and of downsampling units, uncalled containers (-vv or --json lists all)")
