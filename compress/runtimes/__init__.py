"""Runtimes: running a model the way a device will, for export verification and latency alike.

One builder per runtime (:func:`paddle_predictor`, :func:`onnx_session`), each used both by
``compress export`` (verifying every file against the dygraph model, :func:`run_dygraph`)
and by :mod:`compress.measurement` (timing). What differs between the two uses is an option
of the builder: timing fixes the thread count and turns ONNX Runtime's spinning off.

The runners for timing live in a registry keyed by name (``RUNTIMES``): ``paddle`` (Paddle
Inference, oneDNN on by default) and ``onnxruntime`` (CPU execution provider). A runner is
built from an export directory (see :mod:`compress.runtimes.layout`) and a thread count,
and exposes ``run(x) -> logits``.
"""
from __future__ import annotations

import inspect

from ..errors import CompressError
from .base import Runner
from .dygraph import run_dygraph
from .onnx import OnnxRuntimeRunner, onnx_session, run_onnx
from .paddle import PaddleInferenceRunner, paddle_predictor, run_paddle_inference

RUNTIMES: dict[str, type[Runner]] = {
    "paddle": PaddleInferenceRunner,
    "onnxruntime": OnnxRuntimeRunner,
}
# How reports and progress name runtimes (any other name is shown as is).
RUNTIME_LABELS = {"paddle": "Paddle Inference", "onnxruntime": "ONNX Runtime",
                  "onnxruntime-int8": "ONNX Runtime (int8)"}


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


__all__ = ["RUNTIMES", "RUNTIME_LABELS", "Runner", "make_runner", "runtime_label", "run_dygraph", "onnx_session",
           "run_onnx", "paddle_predictor", "run_paddle_inference", "PaddleInferenceRunner", "OnnxRuntimeRunner"]
