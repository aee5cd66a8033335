"""Which source a ``--data`` value names, and how a sidecar records it."""
from __future__ import annotations

from pathlib import Path

from ..common.errors import CompressError
from .files import FolderSource, ListSource
from .npz import NpzSource
from .shapes import ShapesSource
from .sources import DigitsSource, Source

# name -> source class, in the order a ``--data`` value is matched (a directory with list files
# before a class-folder directory)
DATA_SOURCES: dict[str, type[Source]] = {
    "digits": DigitsSource,
    "shapes": ShapesSource,
    "npz": NpzSource,
    "list": ListSource,
    "folder": FolderSource,
}


def source_kind(spec: str) -> str:
    """The registry name of the source ``spec`` names (``digits``, an .npz, list files, a folder)."""
    spec = str(spec)
    for name, cls in DATA_SOURCES.items():
        if cls.matches(spec):
            return name
    if Path(spec).exists():
        raise CompressError(f"{spec}: not a data directory, list file (.txt) or .npz file")
    raise CompressError(f"unknown data source {spec!r}: use 'digits', 'shapes[:COUNT[:SEED]]', an image-folder "
                        "directory, a directory with train_list.txt, or an .npz file")


def open_source(spec: str) -> Source:
    """Open (index and check) the source ``spec`` names; nothing is decoded yet."""
    return DATA_SOURCES[source_kind(spec)].open(str(spec))


def stored_source(source: str | None) -> str | None:
    """How a data source is recorded in a sidecar: a registry name as is, a path made absolute,
    so the model's data is found from any working directory."""
    if source is None:
        return None
    return str(source) if DATA_SOURCES[source_kind(source)].builtin else str(Path(source).resolve())
