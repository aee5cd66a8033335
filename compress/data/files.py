"""Image files on disk: a class-folder tree, or PaddleClas-style list files.

Layouts (``--data``):

- ``DIR/<class>/<image>``: classes are the sub-folders (sorted), images found recursively;
  split 60/20/20, stratified, seeded (``sources.stratified_split``).
- ``DIR/{train,val,test}/<class>/<image>``: the split as given. With only ``train`` and ``val``
  (the ImageNet layout), ``val`` is the held-out test split and a stratified, seeded 10 % of
  ``train`` is the validation split. The class folders must be the same in every split.
- list files: a directory holding ``train_list.txt`` and ``val_list.txt`` (optional
  ``test_list.txt`` and ``label_list.txt``), or the path of the training list itself (its
  siblings found by replacing ``train`` in its name with ``val`` / ``test``). Each line is
  ``relative/path label``, relative to the list's directory; the label is the last
  whitespace-separated token (so the path may contain spaces); blank lines are skipped.
  ``label_list.txt`` lines are ``id name``. With a test list the three lists are the splits;
  without one, ``val_list`` is the held-out test split (the figure PaddleClas reports as
  validation accuracy) and a stratified, seeded 10 % of ``train_list`` is the validation split.

Every file is header-checked when the source opens (``images.check_images``), so a bad file is
named before any training starts.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..common.errors import CompressError
from .images import IMAGE_SUFFIXES, MAX_PIXELS, check_images, load_image
from .sources import (RULE_60_20_20, RULE_CARVED, RULE_GIVEN, SPLITS, Source, carve_val, decoding_workers,
                      stratified_split)

LIST_FILES = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}
LABEL_LIST = "label_list.txt"


class PathTable:
    """File paths packed into one bytes object plus an offsets array.

    Why: forked loader workers touch the reference count of every Python object they read, which
    copies the memory page it lives on into each worker; a list of a million ``str`` paths is
    then duplicated per worker. One bytes object and one numpy array are two objects.
    """

    def __init__(self, paths: list[str]):
        encoded = [os.fsencode(p) for p in paths]
        self._blob = b"".join(encoded)
        self._ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> str:
        start = int(self._ends[i - 1]) if i > 0 else 0
        return os.fsdecode(self._blob[start:int(self._ends[i])])


class FileSource(Source):
    """Images decoded from files, one per request; checked (headers) when the source opens."""

    defaults = {"resize": "short", "normalize": "imagenet", "augment": "standard"}

    def __init__(self, location: str, paths: list[str], labels, items: dict, class_names: list[str],
                 split_rule: str, max_pixels: int = MAX_PIXELS, checked: bool = False):
        if not checked:
            check_images(dict.fromkeys(paths), max_pixels)
        for s in SPLITS:
            if len(items[s]) == 0:
                raise CompressError(f"{location}: the {s} split has no images")
        self.max_pixels = max_pixels
        self._paths = PathTable(paths)
        super().__init__(location, labels, items, class_names, split_rule)

    def path(self, split: str, i: int) -> str:
        return self._paths[int(self._split(split)[i])]

    def _load(self, item: int, size_hint):
        return load_image(self._paths[item], size_hint, self.max_pixels)

    @property
    def default_workers(self) -> int:
        return decoding_workers()


def _given_items(sizes: list[int], labels: np.ndarray, where: str) -> tuple[dict, str]:
    """Items of consecutive train/val[/test] blocks; without a test block, val is test and 10 % of train val."""
    bounds = np.cumsum([0, *sizes])
    blocks = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(sizes))]
    if len(blocks) == 3:
        return dict(zip(SPLITS, blocks)), RULE_GIVEN
    train, val = carve_val(blocks[0], labels, where)
    return {"train": train, "val": val, "test": blocks[1]}, RULE_CARVED


# --------------------------------------------------------------------------- class folders
def _visible_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_files(root: Path, classes: list[str]) -> tuple[list[str], list[int], list[str]]:
    """(paths, labels, class folders without images) under ``root/<class>/``, recursively, sorted."""
    paths, labels, empty = [], [], []
    for ci, name in enumerate(classes):
        found = sorted(f for f in (root / name).rglob("*")
                       if f.suffix.lower() in IMAGE_SUFFIXES and not any(
                           part.startswith(".") for part in f.relative_to(root).parts) and f.is_file())
        paths += [str(f) for f in found]
        labels += [ci] * len(found)
        if not found:
            empty.append(name)
    return paths, labels, empty


def _split_layout(root: Path, splits: list[str]) -> list[str]:
    """Class names of ``train``; refuse when another split's class folders differ, naming the difference."""
    classes = {s: _visible_dirs(root / s) for s in splits}
    diffs = []
    for s in splits[1:]:
        lacks, extra = sorted(set(classes["train"]) - set(classes[s])), sorted(set(classes[s]) - set(classes["train"]))
        diffs += [f"{s}/ lacks {lacks}"] * bool(lacks) + [f"{s}/ has {extra}, which train/ lacks"] * bool(extra)
    if diffs:
        raise CompressError(f"{root}: the class folders differ between splits: {'; '.join(diffs)}")
    return classes["train"]


class FolderSource(FileSource):
    """``DIR/<class>/<image>`` or ``DIR/{train,val[,test]}/<class>/<image>`` (see the module docstring)."""

    kind = "folder"

    @classmethod
    def matches(cls, spec: str) -> bool:
        return Path(spec).is_dir()

    @classmethod
    def open(cls, spec: str) -> "FolderSource":
        root = Path(os.path.abspath(spec))  # absolute paths without resolving each file's symlinks
        try:
            entries = [p.name for p in root.iterdir() if not p.name.startswith(".")]
        except PermissionError:
            raise CompressError(f"{root}: cannot read the data directory") from None
        if not entries:
            raise CompressError(f"{root}: empty data directory")
        dirs = set(_visible_dirs(root))
        if "train" in dirs and len(dirs) >= 2 and dirs <= set(SPLITS):
            return cls._open_split(root, [s for s in SPLITS if s in dirs])
        return cls._open_flat(root)

    @classmethod
    def _open_flat(cls, root: Path) -> "FolderSource":
        classes = _visible_dirs(root)
        paths, labels, empty = _class_files(root, classes)
        if not paths:
            raise CompressError(f"{root}: no images found (expected {root}/<class>/<image>)")
        check_images(paths)  # a bad file is the first thing to hear about
        if len(classes) < 2:
            raise CompressError(f"{root}: need at least 2 class folders, found {len(classes)}")
        if empty:
            raise CompressError(f"{root}: class folders without images: {empty}")
        labels = np.array(labels, dtype=np.int64)
        return cls(str(root), paths, labels, stratified_split(labels, str(root)), classes, RULE_60_20_20,
                   checked=True)

    @classmethod
    def _open_split(cls, root: Path, splits: list[str]) -> "FolderSource":
        classes = _split_layout(root, splits)
        paths, labels, sizes = [], [], []
        for s in splits:
            p, y, empty = _class_files(root / s, classes)
            if s == "train" and empty:
                raise CompressError(f"{root}/train: class folders without images: {empty}")
            paths, labels, sizes = paths + p, labels + y, sizes + [len(p)]
        labels = np.array(labels, dtype=np.int64)
        items, rule = _given_items(sizes, labels, str(root))
        return cls(str(root), paths, labels, items, classes, rule)


# --------------------------------------------------------------------------- list files
def _read_text(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CompressError(f"{path}: cannot read the list file ({e})") from None


OUTSIDE_ENV = "COMPRESS_LIST_OUTSIDE_ROOT"


def _inside(root: Path, f: Path) -> bool:
    """``f`` (symlinks and ``..`` resolved) lies below ``root``, or the user allowed any path."""
    if os.environ.get(OUTSIDE_ENV) == "1":
        return True
    base = os.path.realpath(root)
    return os.path.realpath(f).startswith(base.rstrip(os.sep) + os.sep)


def _read_list(path: Path) -> tuple[list[str], list[int], list[int]]:
    """(paths, labels, line numbers) of a ``relative/path label`` list; refuse a bad line by number."""
    root = path.parent
    paths, labels, lines = [], [], []
    for n, raw in enumerate(_read_text(path), 1):
        line = raw.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise CompressError(f"{path}:{n}: malformed line {line!r} (expected 'relative/path label')")
        rel, label = parts
        try:
            labels.append(int(label))
        except ValueError:
            raise CompressError(f"{path}:{n}: label {label!r} is not an integer") from None
        f = root / rel
        if not _inside(root, f):
            raise CompressError(f"{path}:{n}: {rel!r} is outside the list's folder {root}; list files name images "
                                f"below their own folder (set {OUTSIDE_ENV}=1 to allow others)")
        if not f.is_file():
            raise CompressError(f"{path}:{n}: no such image file {str(f)!r}")
        paths.append(os.path.abspath(f))
        lines.append(n)
    if not paths:
        raise CompressError(f"{path}: the list has no images")
    return paths, labels, lines


def _read_label_list(path: Path) -> list[str]:
    """Class names from ``id name`` lines; the ids must be 0..K-1, each once."""
    names: dict[int, str] = {}
    for n, raw in enumerate(_read_text(path), 1):
        parts = raw.strip().split(None, 1)
        if not parts:
            continue
        try:
            cid = int(parts[0])
        except ValueError:
            raise CompressError(f"{path}:{n}: class id {parts[0]!r} is not an integer") from None
        if cid in names:
            raise CompressError(f"{path}:{n}: class id {cid} appears twice")
        names[cid] = parts[1] if len(parts) > 1 else str(cid)
    if sorted(names) != list(range(len(names))) or not names:
        ids = sorted(names)
        raise CompressError(f"{path}: class ids must be 0..K-1 with none missing; found {ids[:10]}"
                            f"{' ...' if len(ids) > 10 else ''}")
    return [names[i] for i in range(len(names))]


def _list_files(spec: str) -> dict[str, Path]:
    """The split -> list file map for a directory or a training list's path (siblings found by name)."""
    p = Path(spec)
    if p.is_dir():
        files = {s: p / name for s, name in LIST_FILES.items()}
    else:
        stem, sep, tail = p.name.rpartition("train")
        if not sep:
            raise CompressError(f"{p}: name the training list (a file whose name contains 'train')")
        files = {s: p.with_name(f"{stem}{s}{tail}") for s in SPLITS}
    if not files["val"].is_file():
        raise CompressError(f"{files['train']}: needs {files['val'].name} next to it (the held-out images)")
    return {s: f for s, f in files.items() if s != "test" or f.is_file()}


def _check_labels(lists: dict, num_classes: int, named: bool) -> None:
    """Refuse the first label outside [0, classes), with its file and line."""
    for path, (_, labels, lines) in lists.items():
        for label, n in zip(labels, lines):
            if not 0 <= label < num_classes:
                why = (f"{LABEL_LIST} names {num_classes} classes" if named else
                       f"without a {LABEL_LIST}, labels must be below the number of listed images ({num_classes})")
                raise CompressError(f"{path}:{n}: label {label} is out of range [0, {num_classes}): {why}")


class ListSource(FileSource):
    """PaddleClas-style ``train_list.txt`` / ``val_list.txt`` [/ ``test_list.txt``] (see the module docstring)."""

    kind = "list"

    @classmethod
    def matches(cls, spec: str) -> bool:
        p = Path(spec)
        return (p.is_file() and p.suffix == ".txt") or (p.is_dir() and (p / LIST_FILES["train"]).is_file())

    @classmethod
    def open(cls, spec: str) -> "ListSource":
        files = _list_files(spec)
        lists = {files[s]: _read_list(files[s]) for s in SPLITS if s in files}
        label_list = files["train"].parent / LABEL_LIST
        if label_list.is_file():
            names = _read_label_list(label_list)
            _check_labels(lists, len(names), True)
        else:
            total = sum(len(v[0]) for v in lists.values())
            _check_labels(lists, total, False)
            names = [str(i) for i in range(max(max(v[1]) for v in lists.values()) + 1)]
        paths = [p for v in lists.values() for p in v[0]]
        labels = np.array([y for v in lists.values() for y in v[1]], dtype=np.int64)
        items, rule = _given_items([len(v[0]) for v in lists.values()], labels, str(files["train"]))
        return cls(str(spec), paths, labels, items, names, rule)
