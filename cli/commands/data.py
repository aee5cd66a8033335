"""`compress data make`: write a built-in data set as an image folder."""
from __future__ import annotations

from pathlib import Path

import typer

from compress.data.shapes import DEFAULT_COUNT, DEFAULT_SIZE
from compress.workflows.data import MAKERS, make_data

from ..output import emit_json, stdout
from ..progress import RichProgress


def make(
    name: str = typer.Argument("shapes", help=f"The data set: {', '.join(MAKERS)}."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to create (must not exist, or be empty)."),
    count: int = typer.Option(DEFAULT_COUNT, help="Images in all (60/20/20 train/val/test)."),
    size: int = typer.Option(DEFAULT_SIZE, help="Width and height in pixels."),
    seed: int = typer.Option(0, help="Which images: the same seed gives the same images."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Write a built-in data set (e.g. the procedural `shapes`) as JPEGs in DIR/{train,val,test}/<class>/."""
    info = make_data(name, out, count=count, size=size, seed=seed, progress=RichProgress())
    if as_json:
        return emit_json(info)
    sizes = ", ".join(f"{k} {v}" for k, v in info["splits"].items())
    stdout.print(f"wrote {out}: {info['count']} images of {size}x{size} ({sizes}); use it with --data {out}")
