"""Paddle Inference on CPU: the one place a predictor is configured, for export verification and timing alike."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle.inference as pi

from ..common.errors import CompressError
from ..common.native import capture_stderr, capture_stdout
from .base import Runner
from .layout import (LEGACY_MODEL, ONNX_FILE, PADDLE_INT8_MODEL, PADDLE_MODEL, onnx_input_shape, paddle_files,
                     paddle_input_shape)


# The op types oneDNN may run in INT8. Its default (every type its pass knows) silently wrecked the small
# ViTs tried (97.2 % -> 9.7 % test accuracy: quantizing transpose2 and elementwise_add, e.g. the positional
# embedding's add, broke them); this set keeps the CNNs' speed-up and the ViTs' accuracy.
MKLDNN_INT8_OPS = ("conv2d", "fused_conv2d", "fc", "matmul", "matmul_v2")


def paddle_predictor(model_file: str | Path, params_file: str | Path, onednn: bool, threads: int = 1,
                     int8: bool = False):
    """A Paddle Inference predictor on CPU, oneDNN on or off, IR optimisation on, glog quiet.

    ``int8``: oneDNN's INT8 kernels (``enable_mkldnn_int8`` on :data:`MKLDNN_INT8_OPS`; implies oneDNN) for a
    model quantized by PaddleSlim. Loads the PIR ``model.json`` and the legacy ``model.pdmodel`` alike.
    """
    cfg = pi.Config(str(model_file), str(params_file))
    cfg.disable_gpu()
    if onednn or int8:
        cfg.enable_mkldnn()
        if int8:
            cfg.enable_mkldnn_int8(set(MKLDNN_INT8_OPS))
    else:
        cfg.disable_mkldnn()
    cfg.set_cpu_math_library_num_threads(threads)
    cfg.switch_ir_optim(True)
    cfg.disable_glog_info()
    return pi.create_predictor(cfg)


def io_handles(predictor):
    """(input handle, output handle) of a one-input predictor; created once, reusable across shapes."""
    return (predictor.get_input_handle(predictor.get_input_names()[0]),
            predictor.get_output_handle(predictor.get_output_names()[0]))


def run_paddle_inference(predictor, x: np.ndarray, handles=None) -> np.ndarray:
    """Logits for a batch; ``handles`` (from :func:`io_handles`) saves looking them up on every call."""
    inp, out = handles or io_handles(predictor)
    inp.reshape(list(x.shape))
    inp.copy_from_cpu(np.ascontiguousarray(x, dtype=np.float32))
    predictor.run()
    return out.copy_to_cpu()


class PaddleInferenceRunner(Runner):
    """Paddle Inference on CPU; input/output handles are created once and reused. Subclasses run the
    export's other Paddle models (``model``: where in the export, ``int8``: oneDNN INT8 kernels)."""

    runtime = "paddle"
    engine = "paddle"
    model = PADDLE_MODEL
    int8 = False

    def __init__(self, export_dir, threads: int = 1, onednn: bool = True):
        super().__init__()
        model, params = paddle_files(Path(export_dir), self.model)
        self.path, self.threads, self.onednn = model, int(threads), bool(onednn) or self.int8
        try:
            with capture_stdout(), capture_stderr():  # oneDNN's INT8 passes print their progress
                self._predictor = paddle_predictor(model, params, onednn=self.onednn, threads=self.threads,
                                                   int8=self.int8)
        except Exception as e:  # noqa: BLE001 - paddle raises many types; report one line
            raise CompressError(self._failure("cannot load", e)) from None
        names = self._predictor.get_input_names()
        if len(names) != 1:
            raise CompressError(f"{model}: the model has {len(names)} inputs ({', '.join(names)}); one image input is expected")
        self.input_name = names[0]
        self._handles = io_handles(self._predictor)
        sibling = model.parent.parent / ONNX_FILE
        own = paddle_input_shape(model) if model.suffix == ".json" else None
        self.input_shape = own or (onnx_input_shape(sibling) if sibling.is_file() else None)

    def _failure(self, what: str, e: Exception) -> str:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        hint = " (oneDNN is on: try again with oneDNN off)" if self.onednn else ""
        return f"{self.path}: Paddle Inference {what} the model: {msg}{hint}"

    def run(self, x: np.ndarray) -> np.ndarray:
        try:
            return run_paddle_inference(self._predictor, x, self._handles)
        except Exception as e:  # noqa: BLE001
            raise CompressError(self._failure("cannot run", e)) from None

    def describe(self) -> dict:
        return {**super().describe(), "onednn": self.onednn, **({"int8": True} if self.int8 else {})}


class PaddleLegacyRunner(PaddleInferenceRunner):
    """The legacy ``paddle-legacy/model.pdmodel`` (what Paddle Lite's opt takes), FP32."""

    runtime = "paddle-legacy"
    model = LEGACY_MODEL


class PaddleInt8Runner(PaddleInferenceRunner):
    """PaddleSlim's INT8 ``paddle-int8/model.pdmodel`` on oneDNN's INT8 kernels."""

    runtime = "paddle-int8"
    model = PADDLE_INT8_MODEL
    int8 = True
