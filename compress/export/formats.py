"""The export formats (:data:`EXPORTERS`, a registry) and what an export writes and how strictly
it is verified (:class:`ExportOptions`, validated on construction; errors name the parameter,
which the CLI shows as its flag)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from ..data import source_kind
from ..common.errors import CompressError
from ..runtimes.layout import (INT8_FILE, LEGACY_MODEL, LEGACY_PARAMS, ONNX_FILE, PADDLE_INT8_MODEL, PADDLE_INT8_PARAMS,
                               PADDLE_MODEL, PADDLE_PARAMS)
from .job import ExportJob
from .legacy import export_paddle_legacy
from .onnx import DEFAULT_OPSET, check_opset, export_onnx
from .ort_int8 import export_int8
from .paddle import export_paddle
from .paddle_int8 import export_paddle_int8
from .parity import DEFAULT_ATOL, DEFAULT_MIN_AGREEMENT, DEFAULT_RTOL, Tolerance


@dataclass(frozen=True)
class Exporter:
    """One builder. ``build(job, keep)``: ``keep`` is False when its files are only an intermediate.
    ``int8_for``: an INT8 builder, run (with ``int8`` on) when one of those formats is exported."""

    name: str
    build: Callable[[ExportJob, bool], None]
    files: tuple
    requires: tuple = ()
    description: str = ""
    int8_for: tuple = ()


# Order matters: each exporter may need the ones before it (``requires``).
EXPORTERS: dict[str, Exporter] = {
    "paddle": Exporter("paddle", export_paddle, (PADDLE_MODEL, PADDLE_PARAMS), (),
                       "Paddle Inference (paddle/model.json + model.pdiparams)"),
    "paddle-legacy": Exporter("paddle-legacy", export_paddle_legacy, (LEGACY_MODEL, LEGACY_PARAMS), (),
                              "the legacy Paddle format for Paddle Lite's opt (paddle-legacy/model.pdmodel + "
                              "model.pdiparams)"),
    "paddle-int8": Exporter("paddle-int8", export_paddle_int8, (PADDLE_INT8_MODEL, PADDLE_INT8_PARAMS),
                            ("paddle-legacy",), "INT8 by PaddleSlim for Paddle Inference/Lite, the fastest accurate "
                            "scheme if it beats FP32 (paddle-int8/model.pdmodel + model.pdiparams)",
                            int8_for=("paddle", "paddle-legacy")),
    "onnx": Exporter("onnx", export_onnx, (ONNX_FILE,), ("paddle",), "ONNX via paddle2onnx (model.onnx)"),
    "onnx-int8": Exporter("onnx-int8", export_int8, (INT8_FILE,), ("onnx",),
                          "INT8 ONNX for ONNX Runtime, the fastest accurate scheme if it beats FP32 "
                          "(model.int8.onnx)", int8_for=("onnx",)),
}
# What a user can ask for (INT8 builders run through `int8`).
FORMATS = tuple(name for name, e in EXPORTERS.items() if not e.int8_for)
DEFAULT_FORMATS = ("paddle", "onnx")

PARITY_IMAGES = 256         # test images pushed through every runtime, at most
MIN_PARITY_IMAGES = 32      # and at least (when the test split has them)
PARITY_MACS = 64e9          # "auto": as many images as fit this many multiply-accumulates (256 at 0.25 GMACs)
INT8_MODES = ("off", "auto", "force")


def _word_or_count(value, word: str, param: str) -> str | int:
    """``word`` (or None) -> ``word``; a positive integer (or its text) -> int; anything else is refused."""
    if value is None or (isinstance(value, str) and value.strip().lower() == word):
        return word
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(n) != str(value).strip():
        raise CompressError(f"`{param}` must be '{word}' or a positive integer, got {value!r}", param=param)
    return n


def parse_batch(value) -> str | int:
    """``"dynamic"`` / ``None`` -> ``"dynamic"``; a positive integer (or its text) -> int."""
    return _word_or_count(value, "dynamic", "batch")


def parse_parity_images(value) -> str | int:
    """``"auto"`` / ``None`` -> ``"auto"``; a positive integer (or its text) -> int."""
    return _word_or_count(value, "auto", "parity_images")


def parse_formats(formats, int8: str = "off") -> tuple[list[str], str]:
    """(formats in canonical order, INT8 mode) from a list or comma-separated text. ``int8`` as a
    format (the earlier spelling) turns INT8 on for the ONNX export."""
    if isinstance(formats, str):
        formats = [f for f in formats.replace(" ", "").split(",") if f]
    formats = list(dict.fromkeys(formats or ()))
    if "int8" in formats:  # (the earlier spelling: ONNX with INT8)
        formats = [f for f in formats if f != "int8"] or ["onnx"]
        int8 = "auto" if int8 == "off" else int8
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise CompressError(f"unknown export format {bad[0]!r}: use {', '.join(FORMATS)} (comma-separated)",
                            param="formats")
    if not formats:
        raise CompressError(f"no export format given: use {', '.join(FORMATS)}", param="formats")
    return [f for f in FORMATS if f in formats], int8


def parse_int8(value) -> str:
    """``True``/``False`` (or their text) and ``"off"``/``"auto"``/``"force"`` -> the mode."""
    if isinstance(value, bool) or value is None:
        return "auto" if value else "off"
    text = str(value).strip().lower()
    text = {"true": "auto", "yes": "auto", "on": "auto", "false": "off", "no": "off", "none": "off"}.get(text, text)
    if text not in INT8_MODES:
        raise CompressError(f"`int8` must be one of {', '.join(INT8_MODES)}, got {value!r}", param="int8")
    return text


def _fraction(name: str, value, unit: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CompressError(f"`{name}` must be a number, got {value!r}", param=name) from None
    if not (math.isfinite(v) and 0 <= v <= 1):
        raise CompressError(f"`{name}` must be between 0 and 100 {unit}, got {v * 100:g}", param=name)
    return v


@dataclass
class ExportOptions:
    """What to export and how strictly to verify it. Validates (and normalises) itself on
    construction; errors name the parameter.

    ``formats``: names from :data:`FORMATS` (a list or comma-separated text). ``int8``: ``"off"``, ``"auto"``
    (``True``: build the INT8 schemes that apply, measure them on this CPU, keep the fastest one
    within ``max_acc_drop`` only if it beats FP32) or ``"force"`` (keep the fastest accurate one
    even if it is slower than FP32). ``int8_schemes``: restrict the candidates (names, default
    all that apply). ``max_acc_drop`` is a fraction (0.01 = one accuracy point). ``calib_data``:
    the INT8 calibration images (default: the model's own training images).
    ``atol``/``rtol``/``min_argmax_agreement``/``min_top5_agreement``: the parity rule of
    :mod:`compress.export.parity`. ``parity_images``: how many test images every runtime is
    checked on (``"auto"``: 256, fewer for a large model, at least 32). ``force``: replace a
    previous export in the output directory.
    """

    formats: Sequence[str] | str = DEFAULT_FORMATS
    opset: int = DEFAULT_OPSET
    batch: str | int = "dynamic"
    int8: str | bool = "off"
    int8_schemes: Sequence[str] | str | None = None
    int8_seconds: float = 8.0
    calib_data: str | None = None
    max_acc_drop: float = 0.01
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    min_argmax_agreement: float = DEFAULT_MIN_AGREEMENT
    min_top5_agreement: float = DEFAULT_MIN_AGREEMENT
    parity_images: str | int = "auto"
    force: bool = False

    def __post_init__(self):
        self.int8 = parse_int8(self.int8)
        self.formats, self.int8 = parse_formats(self.formats, self.int8)
        if isinstance(self.int8_schemes, str):
            self.int8_schemes = [s for s in self.int8_schemes.replace(" ", "").split(",") if s]
        self.opset = check_opset(self.opset)
        self.batch = parse_batch(self.batch)
        self.parity_images = parse_parity_images(self.parity_images)
        self.int8_seconds = _number("int8_seconds", self.int8_seconds)
        if not (math.isfinite(self.int8_seconds) and self.int8_seconds >= 0):
            raise CompressError(f"`int8_seconds` must be a non-negative number of seconds, got {self.int8_seconds:g}",
                                param="int8_seconds")
        self.max_acc_drop = _fraction("max_acc_drop", self.max_acc_drop, "points")
        tol = Tolerance(*(_number(n, getattr(self, n)) for n in ("atol", "rtol")),
                        *(_fraction(n, getattr(self, n), "%") for n in ("min_argmax_agreement", "min_top5_agreement")))
        self.atol, self.rtol, self.min_argmax_agreement, self.min_top5_agreement = \
            tol.atol, tol.rtol, tol.min_argmax_agreement, tol.min_top5_agreement
        if self.calib_data is not None:
            self.calib_data = _calib_source(self.calib_data, self.int8)

    def to_json(self) -> dict:
        """The options that shape an export's content (not ``force``), as recorded in export.json."""
        return {"formats": list(self.formats), "opset": self.opset, "batch": self.batch, "int8": self.int8,
                "int8_schemes": list(self.int8_schemes) if self.int8_schemes else None,
                "int8_seconds": self.int8_seconds,
                "calib_data": self.calib_data, "max_acc_drop": self.max_acc_drop,
                "tolerance": self.tolerance.to_json(), "parity_images": self.parity_images}

    @property
    def tolerance(self) -> Tolerance:
        return Tolerance(self.atol, self.rtol, self.min_argmax_agreement, self.min_top5_agreement)

    def parity_count(self, available: int, macs: int | None) -> int:
        """How many test images to verify on: as asked, or "auto" by the model's cost."""
        if self.parity_images != "auto":
            return min(int(self.parity_images), available)
        n = PARITY_IMAGES if not macs else int(PARITY_MACS / max(macs, 1))
        return min(max(MIN_PARITY_IMAGES, min(PARITY_IMAGES, n)), available)


def _number(name: str, value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CompressError(f"`{name}` must be a number, got {value!r}", param=name) from None


def _calib_source(calib_data, int8: str) -> str:
    if int8 == "off":
        raise CompressError("`calib_data` is for `int8` (calibration images); add `int8` or leave it out",
                            param=("calib_data", "int8"))
    try:
        source_kind(str(calib_data))
    except CompressError as e:
        raise CompressError(f"`calib_data`: {e}", param="calib_data") from None
    return str(calib_data)
