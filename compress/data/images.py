"""Safe image decoding, one file at a time: a header check at open time, bounded decoding later.

Why a header check: a corrupt, empty or enormous file found an hour into a training run wastes
the hour. ``check_images`` opens every file's header (and, for JPEG and PNG, looks for the end
marker, which catches truncated files) before anything starts, at thousands of files a second,
and names the first bad file.

Why bounded decoding: a 24-megapixel photo decoded at full size to train at 224x224 wastes time
and memory. JPEGs are decoded with DCT scaling (``Image.draft``) to the smallest scale that is
still at least the size the transforms need; every file is refused above a pixel cap.

Every decoded image comes out as 8-bit ``L`` or ``RGB``: 16-bit images are scaled (not
saturated) to 8 bits, palette and alpha images are composited over white, CMYK/YCbCr converted,
and the EXIF orientation is applied (as OpenCV's ``imread`` does, which PaddleClas uses).
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..common.errors import CompressError

MAX_PIXELS = 100_000_000  # the cap on width x height of any image file (100 MP)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"}
COLOUR_MODES = {"P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
SUPPORTED_MODES = GREY_MODES | COLOUR_MODES
ALPHA_BACKGROUND = 255  # transparent pixels become white
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}
_TAIL = 4096  # bytes searched for the end marker before falling back to a full decode


def _fail(path, reason: str) -> CompressError:
    return CompressError(f"{path}: {reason}")


def _open_capped(path, max_pixels: int):
    """``Image.open`` with PIL's decompression-bomb limit set to our cap (it raises above twice the
    limit before reading any pixel data; between one and two times, our own check refuses)."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


@contextlib.contextmanager
def open_image(path, max_pixels: int = MAX_PIXELS):
    """``PIL.Image.open`` with every failure turned into one ``CompressError`` naming the file."""
    try:
        if os.path.getsize(path) == 0:
            raise _fail(path, "unreadable image (empty file, 0 bytes)")
        im = _open_capped(path, max_pixels)
    except Image.DecompressionBombError:
        raise _fail(path, f"image too large (over twice the cap of {max_pixels:,} pixels)") from None
    except UnidentifiedImageError:
        raise _fail(path, "unreadable image (not an image file, or a corrupt header)") from None
    except OSError as e:
        raise _fail(path, f"unreadable image ({e.strerror or e})") from None
    with im:
        w, h = im.size
        if w * h > max_pixels:
            raise _fail(path, f"image too large ({w}x{h} = {w * h:,} pixels, over the cap of {max_pixels:,})")
        if im.mode not in SUPPORTED_MODES:
            raise _fail(path, f"unsupported image mode {im.mode!r} (supported: 8/16-bit grey, palette, RGB(A), CMYK)")
        yield im


def _has_end_marker(path, fmt: str) -> bool:
    marker = _END_MARKERS.get(fmt)
    if marker is None:
        return True
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - _TAIL))
        return marker in f.read()


def check_image(path, max_pixels: int = MAX_PIXELS) -> None:
    """Header check of one file; a JPEG or PNG without its end marker is decoded in full to confirm."""
    with open_image(path, max_pixels) as im:
        if _has_end_marker(path, im.format):
            return
        try:
            im.load()
        except (OSError, SyntaxError, ValueError) as e:
            raise _fail(path, f"unreadable image (truncated or corrupt: {e})") from None


def check_images(paths: Iterable[str], max_pixels: int = MAX_PIXELS) -> int:
    """Check every file; refuse with the first bad one (and how many others fail). Returns the count."""
    first, bad, n = None, 0, 0
    for n, p in enumerate(paths, 1):
        try:
            check_image(p, max_pixels)
        except CompressError as e:
            first, bad = first or e, bad + 1
    if first is not None:
        more = f" ({bad - 1} more of the {n} files fail the check too)" if bad > 1 else ""
        raise CompressError(f"{first}{more}")
    return n


def _from_16bit(im):
    """16-bit (or 32-bit integer) grey scaled to 8 bits: 0..65535 -> 0..255, rounded, not clipped at 255."""
    a = np.asarray(im).astype(np.int64)
    a = (np.clip(a, 0, 65535) * 255 + 32767) // 65535
    return Image.fromarray(a.astype(np.uint8), "L")


def _over_white(im, grey: bool):
    rgba = im.convert("RGBA")
    bg = Image.new("RGBA", rgba.size, (ALPHA_BACKGROUND,) * 3 + (255,))
    out = Image.alpha_composite(bg, rgba).convert("RGB")
    return out.convert("L") if grey else out


def to_8bit(im):
    """Any supported mode -> 8-bit ``L`` (grey sources) or ``RGB`` (everything else)."""
    mode = im.mode
    if mode.startswith("I"):
        return _from_16bit(im)
    grey = mode in GREY_MODES
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in im.info:
        return _over_white(im, grey)
    if mode in ("L", "RGB"):
        return im
    return im.convert("L" if grey else "RGB")


def load_image(path, size_hint: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS):
    """Decode one file to 8-bit ``L``/``RGB``; a JPEG at the smallest DCT scale >= ``size_hint`` (w, h)."""
    with open_image(path, max_pixels) as im:
        try:
            if size_hint is not None and im.format == "JPEG":
                im.draft(im.mode, tuple(int(v) for v in size_hint))
            im.load()
            im = ImageOps.exif_transpose(im)
            return to_8bit(im)
        except (OSError, SyntaxError, ValueError) as e:
            raise _fail(path, f"unreadable image (corrupt data: {e})") from None


def to_channels(im, channels: int):
    """Grey -> RGB by repetition, RGB -> grey by ITU-R 601-2 luma (PIL's ``convert("L")``)."""
    want = "L" if channels == 1 else "RGB"
    return im if im.mode == want else im.convert(want)


def array_to_image(a: np.ndarray, multiplier: float = 1.0):
    """An H,W or H,W,C (C = 1 or 3) array of pixel values / ``multiplier`` -> an 8-bit PIL image."""
    if a.dtype != np.uint8 or multiplier != 1.0:
        a = np.clip(np.rint(a.astype(np.float32) * multiplier), 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(a), "L" if a.ndim == 2 else "RGB")
