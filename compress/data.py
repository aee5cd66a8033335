"""Data sources, in a registry keyed by name: the built-in ``digits``, an image folder, an ``.npz``.

Every source yields float32 NCHW arrays resized to the model's input shape, its
channels adapted (grey <-> RGB), scaled to [-1, 1], with a fixed, seeded
train/val/test split (60/20/20) unless the source brings its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F

from .errors import CompressError

SPLIT_SEED = 0  # the split never depends on the training seed
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class Dataset:
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: list[str]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def describe(self) -> dict:
        return {"source": self.source, "train": len(self.y_train), "val": len(self.y_val),
                "test": len(self.y_test), "classes": self.num_classes}


def _split(x, y, seed=SPLIT_SEED):
    from sklearn.model_selection import train_test_split  # optional heavy: imported only when a split is made

    strat = y if np.bincount(y).min() >= 5 else None
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.4, random_state=seed, stratify=strat)
    strat = y_rest if strat is not None else None
    x_va, x_te, y_va, y_te = train_test_split(x_rest, y_rest, test_size=0.5, random_state=seed, stratify=strat)
    return x_tr, y_tr, x_va, y_va, x_te, y_te


def prepare(x: np.ndarray, input_shape) -> np.ndarray:
    """NCHW/NHWC/NHW images in [0, 1] -> float32 NCHW of ``input_shape``, scaled to [-1, 1]."""
    c, h, w = (int(v) for v in input_shape)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4:
        raise CompressError(f"images must be N,H,W or N,C,H,W (or N,H,W,C), got shape {list(x.shape)}")
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = np.repeat(x, c, axis=1)
        elif c == 1 and x.shape[1] == 3:
            x = x.mean(axis=1, keepdims=True)
        else:
            raise CompressError(f"cannot adapt {x.shape[1]}-channel images to {c} channels")
    if x.shape[2:] != (h, w):
        out = []
        for i in range(0, len(x), 512):
            out.append(F.interpolate(paddle.to_tensor(x[i:i + 512]), size=[h, w], mode="bilinear",
                                     align_corners=False).numpy())
        x = np.concatenate(out) if out else np.zeros((0, c, h, w), np.float32)
    return np.ascontiguousarray((x - 0.5) / 0.5, dtype=np.float32)


def _labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise CompressError("labels must be a 1-D array of non-negative integers")
    return y.astype(np.int64)


def load_digits_source(input_shape, **_) -> Dataset:
    from sklearn.datasets import load_digits  # optional heavy: only the digits source needs it

    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    parts = _split(x, d.target.astype(np.int64))
    xs = [prepare(p, input_shape) if i % 2 == 0 else p for i, p in enumerate(parts)]
    return Dataset("digits", *xs, num_classes=10, class_names=[str(i) for i in range(10)])


def _read_folder(root: Path):
    from PIL import Image, UnidentifiedImageError  # optional heavy: only image folders need it

    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    xs, ys = [], []
    for ci, name in enumerate(classes):
        for f in sorted((root / name).rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                try:
                    with Image.open(f) as im:
                        xs.append(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
                except (UnidentifiedImageError, OSError) as e:
                    raise CompressError(f"{f}: unreadable image ({e})") from None
                ys.append(ci)
    if not xs:
        raise CompressError(f"{root}: no images found (expected {root}/<class>/<image>)")
    shapes = {x.shape for x in xs}
    if len(shapes) > 1:  # bring all to the first image's size before stacking
        h, w = xs[0].shape[:2]
        xs = [np.asarray(Image.fromarray((x * 255).astype(np.uint8)).resize((w, h)), np.float32) / 255.0 for x in xs]
    return np.stack(xs).transpose(0, 3, 1, 2), np.array(ys, dtype=np.int64), classes


def load_folder_source(input_shape, path=None, **_) -> Dataset:
    """``root/<class>/*.png``, or ``root/{train,val,test}/<class>/*.png`` for a given split."""
    root = Path(path)
    if not root.is_dir():
        raise CompressError(f"{root}: not a directory")
    try:
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    except PermissionError:
        raise CompressError(f"{root}: cannot read the data directory") from None
    if not entries:
        raise CompressError(f"{root}: empty data directory")
    if all((root / s).is_dir() for s in ("train", "val", "test")):
        parts, names = [], None
        for s in ("train", "val", "test"):
            x, y, cls = _read_folder(root / s)
            if names is not None and cls != names:
                raise CompressError(f"{root}: train/val/test have different class folders")
            names = cls
            parts += [prepare(x, input_shape), y]
        return Dataset(str(root), *parts, num_classes=len(names), class_names=names)
    x, y, names = _read_folder(root)
    if len(names) < 2:
        raise CompressError(f"{root}: need at least 2 class folders, found {len(names)}")
    parts = _split(x, y)
    xs = [prepare(p, input_shape) if i % 2 == 0 else p for i, p in enumerate(parts)]
    return Dataset(str(root), *xs, num_classes=len(names), class_names=names)


def load_npz_source(input_shape, path=None, **_) -> Dataset:
    """An ``.npz`` with ``x`` (N,H,W[,C] or N,C,H,W; values in [0, 1] or 0..255) and ``y`` (N,) labels."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise CompressError(f"{p}: not a readable .npz ({e})") from None
    if "x" not in arrays or "y" not in arrays:
        raise CompressError(f"{p}: an .npz needs arrays 'x' and 'y', found {sorted(arrays)}")
    if arrays["x"].dtype.kind not in "uif":
        raise CompressError(f"{p}: x must hold numbers, found dtype {arrays['x'].dtype}")
    x = arrays["x"].astype(np.float32)
    if x.size and x.max() > 1.5:
        x = x / 255.0
    y = _labels(arrays["y"])
    if len(x) != len(y) or len(y) < 10:
        raise CompressError(f"{p}: x has {len(x)} images, y {len(y)} labels (need equal counts, at least 10)")
    if len(y) and y.max() >= len(y):  # before anything is sized by the labels (np.bincount, one-hot)
        i = int(y.argmax())
        raise CompressError(f"{p}: label {y[i]} (image {i}) is out of range: labels must be non-negative and below "
                            f"the number of images ({len(y)})")
    if x.ndim not in (3, 4):
        raise CompressError(f"{p}: x must be N,H,W or N,C,H,W (or N,H,W,C), got shape {list(x.shape)}")
    parts = _split(x, y)
    xs = [prepare(q, input_shape) if i % 2 == 0 else q for i, q in enumerate(parts)]
    n = int(y.max()) + 1
    return Dataset(str(p), *xs, num_classes=n, class_names=[str(i) for i in range(n)])


DATA_SOURCES = {"digits": load_digits_source, "folder": load_folder_source, "npz": load_npz_source}


def source_kind(source: str) -> str:
    if source in DATA_SOURCES and source not in ("folder", "npz"):
        return source
    p = Path(source)
    if p.suffix == ".npz":
        if not p.is_file():
            raise CompressError(f"{source}: no such file")
        return "npz"
    if p.exists():
        if not p.is_dir():
            raise CompressError(f"{source}: not a data directory or .npz file")
        return "folder"
    raise CompressError(f"unknown data source {source!r}: use 'digits', an image-folder directory, or an .npz file")


def stored_source(source: str | None) -> str | None:
    """How a data source is recorded in a sidecar: a registry name as is, a path made absolute,
    so the model's data is found from any working directory."""
    if source is None or source in DATA_SOURCES and not Path(source).exists():
        return source
    return str(Path(source).resolve())


_CACHE: dict = {}


def load_data(source: str, input_shape) -> Dataset:
    """Load a data source by name or path, prepared for ``input_shape`` (cached per process)."""
    kind = source_kind(source)
    key = (kind, str(Path(source).resolve()) if kind != "digits" else source, tuple(input_shape))
    if key not in _CACHE:
        _CACHE[key] = DATA_SOURCES[kind](tuple(input_shape), path=source)
    return _CACHE[key]
