"""Paddle Inference on CPU: the one place a predictor is configured, for export verification and timing alike."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle.inference as pi

from ..errors import CompressError
from .base import Runner
from .layout import ONNX_FILE, onnx_input_shape, paddle_files, paddle_input_shape


def paddle_predictor(model_file: str | Path, params_file: str | Path, onednn: bool, threads: int = 1):
    """A Paddle Inference predictor on CPU, oneDNN on or off, IR optimisation on, glog quiet."""
    cfg = pi.Config(str(model_file), str(params_file))
    cfg.disable_gpu()
    if onednn:
        cfg.enable_mkldnn()
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
    """Paddle Inference on CPU; input/output handles are created once and reused."""

    runtime = "paddle"

    def __init__(self, export_dir, threads: int = 1, onednn: bool = True):
        super().__init__()
        model, params = paddle_files(Path(export_dir))
        self.path, self.threads, self.onednn = model, int(threads), bool(onednn)
        try:
            self._predictor = paddle_predictor(model, params, onednn=self.onednn, threads=self.threads)
        except Exception as e:  # noqa: BLE001 - paddle raises many types; report one line
            raise CompressError(self._failure("cannot load", e)) from None
        names = self._predictor.get_input_names()
        if len(names) != 1:
            raise CompressError(f"{model}: the model has {len(names)} inputs ({', '.join(names)}); one image input is expected")
        self.input_name = names[0]
        self._handles = io_handles(self._predictor)
        sibling = model.parent.parent / ONNX_FILE
        self.input_shape = paddle_input_shape(model) or (onnx_input_shape(sibling) if sibling.is_file() else None)

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
        return {**super().describe(), "onednn": self.onednn}
