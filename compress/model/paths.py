"""Which files a command reads and which it writes, compared by what they are on disk, not by name.

Two names are the same file when they resolve to the same path (through ``..`` and
symlinks, also for names that do not exist yet) or, for existing files, to the same inode.
A model is two files (``m.pdparams`` and ``m.compress.json``; ``m.safetensors`` shares that
sidecar), so an output's sidecar is checked as well as its weights. Every command calls
:func:`check_outputs` before any work, with every path it will write (:class:`Output`) and
every file it reads (:func:`model_inputs`, :func:`data_inputs`).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import CompressError
from .sidecar import sidecar_path


@dataclass(frozen=True)
class Output:
    """A path a command will write: ``param`` names the parameter that gave it (for the messages);
    ``tree``: a directory written (or replaced) as a whole, so nothing read may lie inside it;
    ``shown``: how messages name it, when not by its path (a sidecar, by the weights it goes with)."""

    path: Path
    param: str
    tree: bool = False
    shown: str | None = None

    @property
    def where(self) -> str:
        return f"`{self.param}` {self.shown or self.path}"


Input = tuple[str, Path]   # (what it is, e.g. "the input model's sidecar"; where)


def resolved(path) -> Path:
    """The absolute path with every symlink and ``..`` resolved (as far as the path exists)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def same_file(a, b) -> bool:
    """Whether ``a`` and ``b`` name the same file (resolved; or the same inode if both exist)."""
    ra, rb = resolved(a), resolved(b)
    if ra == rb:
        return True
    try:
        sa, sb = os.stat(ra), os.stat(rb)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def inside(path, tree) -> bool:
    """Whether ``path`` is ``tree`` or lies somewhere under it."""
    rp, rt = resolved(path), resolved(tree)
    return rp == rt or rt in rp.parents or same_file(path, tree)


def model_inputs(weights, what: str = "the input model") -> list[Input]:
    """A model's two files: its weights and its sidecar."""
    return [(what, Path(weights)), (f"{what}'s sidecar", sidecar_path(weights))]


def model_outputs(weights, param: str = "out") -> list[Output]:
    """The two files a model is written as."""
    sc = sidecar_path(weights)
    return [Output(Path(weights), param), Output(sc, param, shown=f"{weights} (its sidecar {sc.name})")]


def data_inputs(data) -> list[Input]:
    """The data read, when it is a file or a directory (not a registry name like ``digits``)."""
    return [("the data", Path(data))] if data and os.path.exists(str(data)) else []


def _check_place(o: Output) -> None:
    """The output can be created: a file is not asked to replace a directory, nor a tree a file,
    and the nearest existing ancestor is a directory."""
    where = o.where
    if not o.tree and o.path.is_dir():
        raise CompressError(f"{where} is a directory; give a file path", param=o.param)
    if o.tree and o.path.exists() and not o.path.is_dir():
        raise CompressError(f"{where} exists and is not a directory", param=o.param)
    parent = Path(os.path.abspath(o.path)).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise CompressError(f"cannot write {where}: {parent} is not a directory", param=o.param)


def _clash(a: Output, b: Output) -> bool:
    return same_file(a.path, b.path) or (a.tree and inside(b.path, a.path)) or (b.tree and inside(a.path, b.path))


def check_outputs(outputs: Iterable[Output], inputs: Iterable[Input]) -> None:
    """Refuse (exit code 2, naming the parameter) any output that would overwrite or replace an input,
    or that another output writes too; and any output that cannot be created where it is."""
    outputs, inputs = list(outputs), [(what, Path(p)) for what, p in inputs]
    for o in outputs:
        _check_place(o)
        for what, p in inputs:
            if same_file(o.path, p):
                raise CompressError(f"{o.where} would overwrite {what} {p}; choose another path", param=o.param)
            if o.tree and inside(p, o.path):
                raise CompressError(f"{o.where} would replace a directory with {what} {p} inside it; "
                                    "choose another path", param=o.param)
    for i, a in enumerate(outputs):
        for b in outputs[i + 1:]:
            if _clash(a, b):
                params = (a.param,) if a.param == b.param else (a.param, b.param)
                raise CompressError(f"{a.where} and {b.where} overlap: the same place would be written more than "
                                    "once; choose separate paths", param=params)


def check_room(path: str | os.PathLike, need_bytes: int, param: str = "out") -> None:
    """Refuse, before the work starts, a destination whose file system is read-only or has less free space than
    the estimate ``need_bytes`` (the output, its checkpoints): found now rather than after an epoch."""
    path = Path(path).absolute()
    place = path.parent
    while not place.exists() and place != place.parent:
        place = place.parent
    if not os.access(place, os.W_OK | os.X_OK):
        raise CompressError(f"`{param}` {path}: cannot write there ({place} is not writable); nothing done", param=param)
    try:
        free = shutil.disk_usage(place).free
    except OSError:
        return
    if free < need_bytes:
        raise CompressError(f"`{param}` {path}: {free / 1e6:.1f} MB free on its file system, about "
                            f"{need_bytes / 1e6:.1f} MB needed (the model and its checkpoints); nothing done",
                            param=param)
