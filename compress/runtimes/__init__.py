"""Runtimes: running a model the way a device will, for export verification and latency alike.

One builder per runtime (:func:`paddle_predictor`, :func:`onnx_session`), each used both by
``compress export`` (verifying every file against the dygraph model, :func:`run_dygraph`)
and by :mod:`compress.measure.latency` (timing). What differs between the two uses is an option
of the builder: timing fixes the thread count and turns ONNX Runtime's spinning off.

The runners for timing live in a registry keyed by name (``RUNTIMES``): ``paddle`` (Paddle
Inference, oneDNN on by default) and ``onnxruntime`` (CPU execution provider). A runner is
built from an export directory (see :mod:`compress.runtimes.layout`) and a thread count,
and exposes ``run(x) -> logits``.
"""
from __future__ import annotations

import inspect

from ..common.errors import CompressError
from .base import Runner
from .dygraph import run_dygraph
from .onnx import OnnxRuntimeInt8Runner, OnnxRuntimeRunner, onnx_session, run_onnx
from .paddle import PaddleInferenceRunner, PaddleInt8Runner, PaddleLegacyRunner, paddle_predictor, run_paddle_inference

RUNTIMES: dict[str, type[Runner]] = {
    "paddle": PaddleInferenceRunner,
    "paddle-legacy": PaddleLegacyRunner,
    "paddle-int8": PaddleInt8Runner,
    "onnxruntime": OnnxRuntimeRunner,
    "onnxruntime-int8": OnnxRuntimeInt8Runner,
}
# How reports and progress name runtimes (any other name is shown as is).
RUNTIME_LABELS = {"paddle": "Paddle Inference", "paddle-legacy": "Paddle Inference (legacy format)",
                  "paddle-int8": "Paddle Inference (int8)", "onnxruntime": "ONNX Runtime",
                  "onnxruntime-int8": "ONNX Runtime (int8)"}
# The INT8 runtime of each FP32 one, and the file that must exist in an export for it.
INT8_RUNTIMES = {"paddle": ("paddle-int8", PaddleInt8Runner.model), "onnxruntime": ("onnxruntime-int8",
                                                                                   OnnxRuntimeInt8Runner.default_file)}


def engine(runtime: str) -> str:
    """The library a runtime runs on (runtimes of one engine are timed together, in one process)."""
    return RUNTIMES[runtime].engine if runtime in RUNTIMES else runtime


def runtime_label(runtime: str | None) -> str:
    return RUNTIME_LABELS.get(runtime, runtime or "-")


def make_runner(runtime: str, export_dir, threads: int = 1, **options) -> Runner:
    """Build a runner by registry name. ``options``: ``onednn`` (paddle), ``onnx_file``/``spinning`` (onnxruntime)."""
    if runtime not in RUNTIMES:
        raise CompressError(f"unknown runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    if int(threads) < 1:
        raise CompressError(f"`threads` must be at least 1, got {threads}", param="threads")
    cls = RUNTIMES[runtime]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "export_dir", "threads"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise CompressError(f"runtime {runtime!r} has no option {', '.join(unknown)} (it takes: {', '.join(sorted(accepted))})")
    return cls(export_dir, threads=threads, **options)


__all__ = ["RUNTIMES", "RUNTIME_LABELS", "INT8_RUNTIMES", "Runner", "engine", "make_runner", "runtime_label",
           "run_dygraph", "onnx_session", "run_onnx", "paddle_predictor", "run_paddle_inference",
           "PaddleInferenceRunner", "PaddleLegacyRunner", "PaddleInt8Runner", "OnnxRuntimeRunner",
           "OnnxRuntimeInt8Runner"]
