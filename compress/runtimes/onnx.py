"""ONNX Runtime on CPU: the one place a session is configured, for export verification and timing alike.

onnxruntime is imported when a session is built: reading a report or an export's layout does not need it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common.errors import CompressError
from . import layout
from .base import Runner


def onnx_session(path: str | Path, threads: int | None = None, spinning: bool | None = None):
    """An ONNX Runtime session: CPU execution provider, all graph optimisations, sequential execution.

    ``threads``: ``intra_op_num_threads`` (with one inter-op thread); None leaves onnxruntime's
    default (all cores). ``spinning``: whether idle worker threads spin; None leaves the default
    (on). Timing turns it off: a spinning pool burns a core while the other models of an
    alternated benchmark run.
    """
    import onnxruntime as ort  # optional heavy: only building a session needs it

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    if spinning is not None:
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_onnx(session, x: np.ndarray, input_name: str | None = None) -> np.ndarray:
    """Logits (the first output) for a batch; ``input_name`` saves looking it up on every call."""
    name = input_name or session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime, CPU execution provider, all graph optimisations.

    ``intra_op_num_threads=threads``, ``inter_op_num_threads=1``. Idle worker
    threads do not spin by default (``spinning=False``): a spinning pool would
    burn a core while the other models of an alternated benchmark run.
    """

    runtime = "onnxruntime"
    engine = "onnxruntime"
    default_file = layout.ONNX_FILE

    def __init__(self, export_dir, threads: int = 1, onnx_file: str | None = None, spinning: bool = False):
        super().__init__()
        onnx_file = onnx_file or self.default_file
        self.path, self.threads, self.spinning = layout.onnx_file(Path(export_dir), onnx_file), int(threads), bool(spinning)
        try:
            self._session = onnx_session(self.path, threads=self.threads, spinning=self.spinning)
        except Exception as e:  # noqa: BLE001
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise CompressError(f"{self.path}: ONNX Runtime cannot load the model: {msg}") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise CompressError(f"{self.path}: the model has {len(inputs)} inputs; one image input is expected")
        self.input_name = inputs[0].name
        self.input_shape = layout.static_chw(inputs[0].shape)

    def run(self, x: np.ndarray) -> np.ndarray:
        return run_onnx(self._session, x, self.input_name)

    def describe(self) -> dict:
        return {**super().describe(), "spinning": self.spinning}


class OnnxRuntimeInt8Runner(OnnxRuntimeRunner):
    """The export's INT8 ONNX model (``model.int8.onnx``) on ONNX Runtime."""

    runtime = "onnxruntime-int8"
    default_file = layout.INT8_FILE
