"""``shapes``: a built-in, procedural image set that is harder than the digits.

The digits (1,797 8x8 images; 360 test images, so one image is 0.28 points) are too small and
too easy to tell compression methods apart. ``shapes`` is rendered on demand, so it needs no
storage and no download, at any count and any resolution: ten shape classes (circle, square,
triangle, pentagon, hexagon, star, cross, ring, crescent, arrow) in RGB, each image a pure
function of ``(seed, index, size)``, varying in position, scale, rotation, aspect, colour and
fill texture (flat, stripes, checks, gradient, blobs), on a textured background with clutter
(thin lines, a small distractor shape of any class), sometimes partly occluded, blurred, and with
sensor noise. The object is a bright one on a dark background or the reverse, and the background's
texture has a lower contrast than the object's, so that the shape is what tells the classes apart.
Labels are balanced (``index % 10``).

``--data shapes`` is 10,000 images (6,000 / 2,000 / 2,000 by index ranges), so 0.5 points of
test accuracy are 10 images; ``shapes:N`` gives N images, ``shapes:N:S`` uses seed S.
Images are rendered at the size the transforms ask for (the model's input size), so there is
no resize loss; ``compress data make shapes`` writes the same images as a JPEG folder.
"""
from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..common.errors import CompressError
from .sources import SPLITS, Source

CLASSES = ("circle", "square", "triangle", "pentagon", "hexagon", "star", "cross", "ring", "crescent", "arrow")
DEFAULT_COUNT = 10_000
DEFAULT_SIZE = 64        # when nothing asks for a size
MIN_COUNT = 100
SUPERSAMPLE = 2          # drawn at twice the size, then downsampled: anti-aliased edges
FRACTIONS = (0.6, 0.2, 0.2)


# --------------------------------------------------------------------------- geometry
def _rotate(pts, rot, cx, cy):
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in pts]


def _ngon(n, r, rot, cx, cy, aspect=1.0, inner=None):
    """Vertices of a regular n-gon, or of an n-pointed star with inner radius ``inner`` * r."""
    k = 2 * n if inner else n
    pts = []
    for i in range(k):
        rr = r * (inner if inner and i % 2 else 1.0)
        a = rot + 2 * math.pi * i / k
        pts.append((cx + rr * math.cos(a) * aspect, cy + rr * math.sin(a) / aspect))
    return pts


def _oval(r, aspect, rot, cx, cy, scale=1.0):
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    pts = [(cx + scale * r * aspect * math.cos(a), cy + scale * r / aspect * math.sin(a)) for a in t]
    return _rotate(pts, rot, cx, cy)


def _outline(cls: int, r, rot, cx, cy, aspect, rng) -> tuple[list, list | None]:
    """(outer polygon, hole polygon or None) of shape ``cls``."""
    name = CLASSES[cls]
    if name == "circle":
        return _oval(r, aspect, rot, cx, cy), None
    if name in ("square", "triangle", "pentagon", "hexagon"):
        n = {"square": 4, "triangle": 3, "pentagon": 5, "hexagon": 6}[name]
        return _ngon(n, r, rot + (math.pi / 4 if n == 4 else 0), cx, cy, aspect), None
    if name == "star":
        return _ngon(5, r, rot, cx, cy, aspect, inner=rng.uniform(0.38, 0.5)), None
    if name == "ring":
        return _oval(r, aspect, rot, cx, cy), _oval(r, aspect, rot, cx, cy, scale=rng.uniform(0.45, 0.65))
    if name == "crescent":
        off, rr = r * rng.uniform(0.35, 0.6), rng.uniform(0.8, 0.95)
        return _oval(r, 1.0, rot, cx, cy), _oval(r, 1.0, rot, cx + off * math.cos(rot), cy + off * math.sin(rot), rr)
    if name == "cross":
        w = r * rng.uniform(0.28, 0.4)
        pts = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)]
    else:  # arrow
        w, hw, hl = r * 0.22, r * 0.6, r * 0.7
        pts = [(-r, -w), (r - hl, -w), (r - hl, -hw), (r, 0), (r - hl, hw), (r - hl, w), (-r, w)]
    return _rotate([(cx + x * aspect, cy + y / aspect) for x, y in pts], rot, cx, cy), None


def _mask(cls: int, size: int, cx, cy, r, rot, aspect, rng) -> Image.Image:
    m = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(m)
    outer, hole = _outline(cls, r, rot, cx, cy, aspect, rng)
    draw.polygon(outer, fill=255)
    if hole is not None:
        draw.polygon(hole, fill=0)
    return m


# --------------------------------------------------------------------------- paint
# Calibration (benchmarks/shapes_difficulty.py): the object is kept separable from its background
# (a bright object on a dark background or the reverse, textures of lower contrast behind it), large
# (a radius of 0.22-0.4 of the side), and the clutter, occlusion and noise are kept light; with the
# first version (same-contrast textures everywhere, more clutter) the shipped models stayed at chance.
BRIGHT, DARK = (0.7, 1.0), (0.15, 0.45)   # HSV value ranges of the two tones


def _colour(rng, value=(0.35, 1.0)) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.35, 1.0), rng.uniform(*value)), np.float32)


def _texture(size: int, rng, value=(0.35, 1.0), contrast: float = 1.0) -> Image.Image:
    """An RGB fill of one of five kinds (flat, stripes, checks, gradient, blobs) between two colours,
    the second ``contrast`` as far from the first as at full contrast."""
    base, kind = _colour(rng, value), int(rng.integers(5))
    other = np.clip(base + contrast * rng.normal(0, 0.35, 3), 0, 1).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == 0:
        t = np.zeros_like(xx)
    elif kind == 1:
        a, f = rng.uniform(0, math.pi), rng.uniform(3, 9)
        t = (np.sin(2 * math.pi * f * (xx * math.cos(a) + yy * math.sin(a))) > 0).astype(np.float32)
    elif kind == 2:
        f = int(rng.integers(3, 8))
        t = ((np.floor(xx * f) + np.floor(yy * f)) % 2).astype(np.float32)
    elif kind == 3:
        a = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(a) + yy * math.sin(a)
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    else:
        blobs = Image.fromarray((rng.random((4, 4)) * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        t = np.asarray(blobs, np.float32) / 255.0
    rgb = base * (1 - t[..., None]) + other * t[..., None]
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")


def _rgb(rng, value=(0.35, 1.0)) -> tuple[int, int, int]:
    return tuple(int(v) for v in _colour(rng, value) * 255)


def _clutter(canvas: Image.Image, rng, tone) -> None:
    """Thin lines and at most one small distractor shape (of any class), behind the object."""
    S = canvas.size[0]
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 3))):
        draw.line(list(rng.uniform(0, S, 4)), fill=_rgb(rng, tone), width=max(1, int(rng.uniform(0.5, 1.5) * S / 64)))
    if rng.random() < 0.5:
        r = S * rng.uniform(0.04, 0.08)
        cx, cy = rng.uniform(r, S - r, 2)
        m = _mask(int(rng.integers(len(CLASSES))), S, cx, cy, r, rng.uniform(0, 2 * math.pi), 1.0, rng)
        canvas.paste(_texture(S, rng, tone, 0.5), (0, 0), m)


def _occlude(canvas: Image.Image, rng, cx, cy, r, tone) -> None:
    """A thin bar across part of the object."""
    a, w, half = rng.uniform(0, math.pi), r * rng.uniform(0.08, 0.15), r * rng.uniform(0.4, 0.8)
    ox, oy = cx + rng.uniform(-0.8, 0.8) * r, cy + rng.uniform(-0.8, 0.8) * r
    pts = [(ox - half, oy - w), (ox + half, oy - w), (ox + half, oy + w), (ox - half, oy + w)]
    ImageDraw.Draw(canvas).polygon(_rotate(pts, a, ox, oy), fill=_rgb(rng, tone))


def render(index: int, size: int = DEFAULT_SIZE, seed: int = 0) -> tuple[Image.Image, int]:
    """Image ``index`` (an RGB PIL image of ``size`` x ``size``) and its label; deterministic in
    ``(seed, index, size)``."""
    label = int(index % len(CLASSES))
    rng = np.random.default_rng([int(seed), int(index), 7919])
    S = int(size) * SUPERSAMPLE
    fg, bg = (BRIGHT, DARK) if rng.random() < 0.5 else (DARK, BRIGHT)
    canvas = _texture(S, rng, bg, rng.uniform(0.1, 0.4))
    _clutter(canvas, rng, bg)
    r = S * rng.uniform(0.22, 0.4)
    cx, cy = rng.uniform(0.9 * r, S - 0.9 * r, 2)
    aspect = math.exp(rng.uniform(-0.2, 0.2))
    canvas.paste(_texture(S, rng, fg, 0.5), (0, 0), _mask(label, S, cx, cy, r, rng.uniform(0, 2 * math.pi), aspect, rng))
    if rng.random() < 0.15:
        _occlude(canvas, rng, cx, cy, r, bg)
    out = canvas.resize((int(size), int(size)), Image.BILINEAR)
    if rng.random() < 0.2:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.7) * size / 64))
    noisy = np.asarray(out, np.float32) + rng.normal(0, rng.uniform(1, 5), (int(size), int(size), 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB"), label


# --------------------------------------------------------------------------- the source
def parse_spec(spec: str) -> tuple[int, int]:
    """``shapes`` / ``shapes:N`` / ``shapes:N:SEED`` -> (count, seed)."""
    parts = str(spec).split(":")
    if parts[0] != "shapes" or len(parts) > 3:
        raise CompressError(f"{spec!r}: the shapes source is 'shapes', 'shapes:COUNT' or 'shapes:COUNT:SEED'")
    try:
        count = int(parts[1]) if len(parts) > 1 and parts[1] else DEFAULT_COUNT
        seed = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise CompressError(f"{spec!r}: COUNT and SEED of 'shapes:COUNT:SEED' must be integers") from None
    if not MIN_COUNT <= count <= 10_000_000 or seed < 0:
        raise CompressError(f"{spec!r}: COUNT must be {MIN_COUNT}..10,000,000 and SEED >= 0")
    return count, seed


def split_ranges(count: int) -> dict[str, np.ndarray]:
    """Contiguous index ranges, each a multiple of the class count (so every split is balanced)."""
    k = len(CLASSES)
    n_train = int(count * FRACTIONS[0]) // k * k
    n_val = int(count * FRACTIONS[1]) // k * k
    return {"train": np.arange(0, n_train), "val": np.arange(n_train, n_train + n_val),
            "test": np.arange(n_train + n_val, count)}


class ShapesSource(Source):
    """Procedural shapes: rendered on demand at the requested size (see the module docstring)."""

    kind = "shapes"
    builtin = True
    defaults = {"resize": "exact", "normalize": "half", "augment": "light"}

    def __init__(self, count: int = DEFAULT_COUNT, seed: int = 0):
        self.count, self.seed = int(count), int(seed)
        labels = np.arange(self.count) % len(CLASSES)
        name = "shapes" if (count, seed) == (DEFAULT_COUNT, 0) else f"shapes:{count}" + (f":{seed}" if seed else "")
        super().__init__(name, labels, split_ranges(self.count), list(CLASSES),
                         f"by index: {' / '.join(f'{f:.0%}' for f in FRACTIONS)}")

    @classmethod
    def matches(cls, spec: str) -> bool:
        return (spec == "shapes" or str(spec).startswith("shapes:")) and not Path(spec).exists()

    @classmethod
    def open(cls, spec: str = "shapes") -> "ShapesSource":
        return cls(*parse_spec(spec))

    def _load(self, item: int, size_hint):
        size = max(size_hint) if size_hint else DEFAULT_SIZE
        return render(item, size, self.seed)[0]


def make_folder(out: Path, count: int = DEFAULT_COUNT, size: int = DEFAULT_SIZE, seed: int = 0,
                quality: int = 92, advance=None) -> dict:
    """Write the set into the (new, empty) directory ``out`` as ``{train,val,test}/<class>/<index>.jpg``,
    the image-folder layout ``--data DIR`` reads; returns the split sizes."""
    if not 8 <= int(size) <= 4096:
        raise CompressError(f"`size` must be 8..4096 pixels, got {size}", param="size")
    parse_spec(f"shapes:{count}:{seed}")  # validates count and seed
    ranges = split_ranges(int(count))
    for split in SPLITS:
        for name in CLASSES:
            (out / split / name).mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for i in ranges[split]:
            im, label = render(int(i), int(size), int(seed))
            im.save(out / split / CLASSES[label] / f"{int(i):07d}.jpg", quality=quality)
            if advance is not None:
                advance(1)
    return {split: len(ranges[split]) for split in SPLITS}
