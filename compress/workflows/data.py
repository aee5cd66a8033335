"""Built-in data sets written out as image folders (``compress data make``).

``shapes`` is rendered on demand when a command names it (``--data shapes``); written out as
JPEGs it becomes an ordinary image folder, for tools that want files, for the scale benchmarks'
realistic inputs, or to look at.
"""
from __future__ import annotations

from pathlib import Path

from ..data import shapes
from ..common.errors import CompressError
from ..common.fileio import atomic_dir
from ..model.paths import Output, check_outputs
from ..common.progress import NULL, Progress

# name -> writer(out_dir, count, size, seed, advance=...) -> split sizes
MAKERS = {"shapes": shapes.make_folder}


def make_data(name: str, out, count: int = shapes.DEFAULT_COUNT, size: int = shapes.DEFAULT_SIZE, seed: int = 0,
              progress: Progress = NULL) -> dict:
    """Write built-in data set ``name`` as an image folder ``out/{train,val,test}/<class>/*.jpg``.

    ``out`` must not exist or be empty; it appears complete or not at all.
    """
    if name not in MAKERS:
        raise CompressError(f"unknown data set {name!r}: use one of {', '.join(MAKERS)}", param="name")
    out = Path(out)
    check_outputs([Output(out, "out", tree=True)], [])
    if out.is_dir() and any(out.iterdir()):
        raise CompressError(f"`out` {out} exists and is not empty; choose a new directory", param="out")
    with progress.task(f"writing {name}", int(count)) as advance, atomic_dir(out) as tmp:
        splits = MAKERS[name](tmp, int(count), int(size), int(seed), advance=advance)
    progress.log(f"wrote {out}")
    return {"name": name, "out": str(out), "data": str(out.resolve()), "count": int(count), "size": int(size),
            "seed": int(seed), "splits": splits}
