"""``.npz`` arrays read in place, one image at a time, checked in chunks when opened.

An ``.npz`` is a zip of ``.npy`` files. A member stored without compression (``np.savez``) is
used in place: its array starts at a fixed offset in the file. A compressed member
(``np.savez_compressed``) is extracted once, streaming, into a cache file under the user's cache
directory (``$XDG_CACHE_HOME/compress/npz``, keyed by path, size and modification time) and used
from there. ``np.load`` on an ``.npz`` would instead read the whole array into memory.

Rows are read with positioned reads rather than through a kept ``mmap``: the pages a mapping
touches count in the resident size of every loader worker, while a read's pages stay in the
kernel's page cache, shared and reclaimable. ``MappedArray.memmap()`` gives the mapping when a
caller wants one.

Checks at open time, in chunks of ``CHUNK_BYTES``: ``x`` is numeric, N,H,W / N,H,W,C / N,C,H,W
with 1 or 3 channels, finite, and in [0, 1] (floats) or 0..255; ``y`` is a 1-D integer array of
N labels in [0, N) (so a label of 10**9 is an error, never an allocation).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.errors import CompressError
from .images import array_to_image
from .sources import RULE_60_20_20, Source, decoding_workers, stratified_split

CHUNK_BYTES = 16 << 20
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # zip local file header: name and extra lengths are the last two


@dataclass(frozen=True)
class MappedArray:
    """An ``.npy`` array inside a file: where it starts, its dtype and shape; read by rows."""

    path: str
    offset: int
    dtype: np.dtype
    shape: tuple
    fortran: bool

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def memmap(self) -> np.memmap:
        return np.memmap(self.path, self.dtype, "r", self.offset, self.shape, "F" if self.fortran else "C")

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a new array (a positioned read; Fortran order through a short-lived map)."""
        if self.fortran:
            return np.array(self.memmap()[start:stop])
        buf = bytearray((stop - start) * self.row_bytes)
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.row_bytes)
            if f.readinto(buf) != len(buf):
                raise CompressError(f"{self.path}: the array data is truncated")
        return np.frombuffer(buf, self.dtype).reshape((stop - start, *self.shape[1:]))

    def chunks(self):
        """(start, rows) in pieces of about ``CHUNK_BYTES``."""
        step = max(1, CHUNK_BYTES // max(1, self.row_bytes))
        for start in range(0, self.shape[0], step):
            yield start, self.rows(start, min(self.shape[0], start + step))


# --------------------------------------------------------------------------- locating members
def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "compress" / "npz"


def _stored_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start: after its local header, name and extra field."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
    if fields[0] != b"PK\x03\x04":
        raise CompressError(f"{path}: not a readable .npz (bad zip header for {info.filename})")
    return info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]


def _extract_cached(path: Path, z: zipfile.ZipFile, info: zipfile.ZipInfo) -> Path:
    """A compressed member extracted once (streaming) to the cache; stale copies of it removed."""
    st = path.stat()
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    version = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    root = cache_dir()
    target = root / f"{where}-{version}-{info.filename}"
    if target.is_file() and target.stat().st_size == info.file_size:
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
        for old in root.glob(f"{where}-*-{info.filename}"):
            old.unlink(missing_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with z.open(info) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, target)
    except (OSError, zipfile.BadZipFile) as e:
        raise CompressError(f"{path}: cannot extract the compressed {info.filename} to {root} ({e}); "
                            "save the arrays with np.savez (uncompressed) to use them in place") from None
    return target


def _read_npy_header(f, where: str) -> tuple[tuple, bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        reader = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}[version]
        shape, fortran, dtype = reader(f)
    except (ValueError, KeyError) as e:
        raise CompressError(f"{where}: not a readable .npy array ({e})") from None
    if dtype.hasobject:
        raise CompressError(f"{where}: holds Python objects (a pickle); refusing to load it")
    return shape, fortran, dtype


def map_member(path: Path, z: zipfile.ZipFile, name: str) -> MappedArray:
    """Locate member ``name`` (``x.npy``) in place, or in its extracted cache copy."""
    info = z.getinfo(name)
    if info.flag_bits & 0x1:
        raise CompressError(f"{path}: {name} is encrypted")
    if info.compress_type == zipfile.ZIP_STORED:
        file, start = path, _stored_offset(path, info)
    else:
        file, start = _extract_cached(path, z, info), 0
    end = start + info.file_size
    with open(file, "rb") as f:
        f.seek(start)
        shape, fortran, dtype = _read_npy_header(f, f"{path}: {name}")
        offset = f.tell()
    arr = MappedArray(str(file), offset, dtype, tuple(shape), fortran)
    if offset + arr.row_bytes * (shape[0] if shape else 1) > end:
        raise CompressError(f"{path}: {name} is truncated")
    return arr


# --------------------------------------------------------------------------- checks
def _layout(x: MappedArray, where: str) -> tuple[int, str]:
    """(channels, layout) of x: N,H,W -> NHW; N,H,W,C when C is last and not second; else N,C,H,W."""
    if x.dtype.kind not in "uif":
        raise CompressError(f"{where}: x must hold numbers, found dtype {x.dtype}")
    s = x.shape
    if len(s) == 3:
        c, layout = 1, "NHW"
    elif len(s) == 4 and s[1] not in (1, 3) and s[3] in (1, 3):
        c, layout = s[3], "NHWC"
    elif len(s) == 4:
        c, layout = s[1], "NCHW"
    else:
        raise CompressError(f"{where}: x must be N,H,W or N,C,H,W (or N,H,W,C), got shape {list(s)}")
    if c not in (1, 3):
        raise CompressError(f"{where}: cannot adapt {c}-channel images (x needs 1 or 3 channels)")
    if min(s) < 1:
        raise CompressError(f"{where}: x is empty (shape {list(s)})")
    return c, layout


def _pixel_multiplier(x: MappedArray, where: str) -> float:
    """Scan x in chunks: finite, >= 0; floats up to 1 are scaled by 255, anything else must be <= 255."""
    lo, hi = np.inf, -np.inf
    for start, rows in x.chunks():
        if x.dtype.kind == "f" and not np.isfinite(rows).all():
            bad = start + int(np.flatnonzero((~np.isfinite(rows.reshape(len(rows), -1))).any(1))[0])
            raise CompressError(f"{where}: x holds NaN or infinite values (first in image {bad})")
        lo, hi = min(lo, float(rows.min())), max(hi, float(rows.max()))
    if lo < 0 or hi > 255:
        raise CompressError(f"{where}: x values must be in [0, 1] or 0..255, found {lo:g}..{hi:g}")
    return 255.0 if x.dtype.kind == "f" and hi <= 1.0 else 1.0


def _labels(y: MappedArray, n: int, where: str) -> np.ndarray:
    """y: 1-D integers, one per image, each in [0, n); checked before anything is sized by them."""
    if len(y.shape) != 1 or y.dtype.kind not in "ui":
        raise CompressError(f"{where}: labels must be a 1-D array of non-negative integers, "
                            f"got dtype {y.dtype} shape {list(y.shape)}")
    if y.shape[0] != n or n < 10:
        raise CompressError(f"{where}: x has {n} images, y {y.shape[0]} labels (need equal counts, at least 10)")
    labels = y.rows(0, n).astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= n))
    if len(bad):
        raise CompressError(f"{where}: label {labels[bad[0]]} (image {bad[0]}) is out of range: labels must be "
                            f"non-negative and below the number of images ({n})")
    return labels


class NpzSource(Source):
    """``x`` and ``y`` arrays of an ``.npz``, split 60/20/20 (stratified, seeded)."""

    kind = "npz"

    def __init__(self, path: str, x: MappedArray, layout: str, multiplier: float, labels: np.ndarray):
        self.x, self.layout, self.multiplier = x, layout, multiplier
        k = int(labels.max()) + 1
        super().__init__(path, labels, stratified_split(labels, path), [str(i) for i in range(k)], RULE_60_20_20)

    @classmethod
    def matches(cls, spec: str) -> bool:
        if Path(spec).suffix != ".npz":
            return False
        if not Path(spec).is_file():
            raise CompressError(f"{spec}: no such file")
        return True

    @classmethod
    def open(cls, spec: str) -> "NpzSource":
        path = Path(spec)
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                if "x.npy" not in names or "y.npy" not in names:
                    found = sorted(n.removesuffix(".npy") for n in names)
                    raise CompressError(f"{path}: an .npz needs arrays 'x' and 'y', found {found}")
                x, y = map_member(path, z, "x.npy"), map_member(path, z, "y.npy")
        except (OSError, zipfile.BadZipFile) as e:
            raise CompressError(f"{path}: not a readable .npz ({e})") from None
        _, layout = _layout(x, str(path))
        labels = _labels(y, x.shape[0], str(path))
        return cls(str(path), x, layout, _pixel_multiplier(x, str(path)), labels)

    def _load(self, item: int, size_hint):
        a = self.x.rows(item, item + 1)[0]
        if self.layout == "NCHW":
            a = a.transpose(1, 2, 0)
        return array_to_image(a, self.multiplier)

    @property
    def default_workers(self) -> int:
        """Small arrays decode faster in the training process than through worker processes."""
        h, w = self.x.shape[1:3] if self.layout != "NCHW" else self.x.shape[2:4]
        return 0 if h * w <= 128 * 128 else decoding_workers()
