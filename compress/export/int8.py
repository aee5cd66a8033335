"""INT8 export: onnxruntime static quantization (QDQ, per-channel) of the verified FP32 ONNX
model, calibrated on real training images and kept only if its test accuracy holds.

INT8
----
PaddleSlim 2.6.0 (its last release) predates Paddle 3 and its PTQ cannot save a
quantized model on Paddle 3.3.1, and ``paddle.quantization`` PTQ models fail in
``paddle.jit.save`` there; so INT8 goes through onnxruntime's maintained static
quantizer on the verified FP32 ONNX model: QDQ format, per-channel INT8 weights,
UINT8 activations, MinMax calibration on real training images.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from ..data import load_data
from ..errors import EXIT_ACCURACY, CompressError
from ..native import capture_stdout, quiet_logging
from ..runtimes import onnx as ort_runtime
from ..runtimes.layout import INT8_FILE, ONNX_FILE, WORK_DIR
from .job import INPUT_NAME, ExportJob, batched, first_line

CALIB_IMAGES = 256      # training images used to calibrate INT8
# Only the weight-heavy ops are quantized. On the 8-epoch vit_tiny (digits test split, 360 images) this kept
# INT8 at 66.1 % vs FP32 65.6 % (argmax agreement 97.5 %), where quantizing every supported op (LayerNorm,
# Softmax, Add, ...) gave 65.3 % (96.9 %); resnet_tiny was unchanged either way (95.6 %).
INT8_OP_TYPES = ("Conv", "MatMul", "Gemm")
SETTINGS = {"format": "QDQ", "op_types": list(INT8_OP_TYPES), "per_channel": True, "weight_type": "QInt8",
            "activation_type": "QUInt8", "reduce_range": False, "calibrate_method": "MinMax"}


@contextlib.contextmanager
def _cwd(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


class _CalibrationReader:
    """onnxruntime CalibrationDataReader over real images, in the export's batch size."""

    def __init__(self, x: np.ndarray, batch: str | int, input_name: str):
        size = 32 if batch == "dynamic" else int(batch)
        self._batches = []
        for i in range(0, len(x), size):
            xb = x[i:i + size]
            if batch != "dynamic" and len(xb) < size:
                continue  # a fixed-batch model takes only full batches
            self._batches.append({input_name: np.ascontiguousarray(xb)})
        self._it = iter(self._batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._batches)

    def __len__(self):
        return len(self._batches)


def _calibration_images(job: ExportJob) -> tuple[np.ndarray, str]:
    """Up to CALIB_IMAGES training images (a seeded choice), a whole number of batches for a fixed batch."""
    batch = job.options.batch
    source = job.options.calib_data or job.data.source
    cdata = job.data if source == job.data.source else load_data(source, job.input_shape)
    pool = cdata.x_train if len(cdata.x_train) else cdata.x_test
    n = min(CALIB_IMAGES, len(pool))
    if batch != "dynamic":
        n = (n // int(batch)) * int(batch) or min(int(batch), len(pool))
    if n == 0 or (batch != "dynamic" and n < int(batch)):
        raise CompressError(f"calibration data {source!r} has too few images ({len(pool)}) for INT8")
    rng = np.random.default_rng(0)
    return pool[np.sort(rng.choice(len(pool), size=n, replace=False))], source


def _pre_process(job: ExportJob, fp32: Path, pre: Path) -> str | None:
    """Shape inference + graph optimisation (e.g. Conv+BN folding) before quantizing; returns the mode that worked.

    Symbolic shape inference fails on the ViT's dynamic reshapes ("Incomplete symbolic shape inference");
    ONNX's own shape inference is enough there. If both fail, the model is quantized as converted.
    (onnxruntime's symbolic shape inference saves "sym_shape_infer_temp.onnx" and an external-data file
    into the current directory when it fails: it runs from the scratch directory.)
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process  # optional heavy: INT8 only

    for mode, skip_symbolic in (("symbolic", False), ("onnx", True)):
        try:
            with capture_stdout(), quiet_logging(), _cwd(pre.parent):
                quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=skip_symbolic)
            return mode
        except Exception as e:  # noqa: BLE001 - pre-processing only helps
            job.progress.log(f"quant_pre_process ({mode} shape inference) failed: {type(e).__name__}: {first_line(e)}")
    return None


def _quantize(source_model: Path, out: Path, x_cal: np.ndarray, batch, scratch: Path) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static  # optional heavy

    try:
        with capture_stdout(), quiet_logging(), _cwd(scratch):
            quantize_static(str(source_model), str(out), _CalibrationReader(x_cal, batch, INPUT_NAME),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(INT8_OP_TYPES),
                            per_channel=True, reduce_range=False, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    except Exception as e:  # noqa: BLE001
        raise CompressError(f"INT8 quantization failed: {type(e).__name__}: {first_line(e)}; nothing written") from None
    if not out.is_file() or out.stat().st_size == 0:
        raise CompressError("INT8 quantization wrote no model; nothing written")


def _test_accuracies(job: ExportJob, int8: Path, fp32: Path) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the FP32 and INT8 models on the test split."""
    try:
        s8, s32 = ort_runtime.onnx_session(int8), ort_runtime.onnx_session(fp32)
    except Exception as e:  # noqa: BLE001
        raise CompressError(f"onnxruntime cannot load the INT8 model: {first_line(e)}; nothing written") from None
    if len(job.data.y_test) == 0:
        raise CompressError(f"data {job.data.source!r} has no test images to measure INT8 accuracy on")
    x_te, batch = job.data.x_test, job.options.batch
    return (batched(lambda xb: ort_runtime.run_onnx(s32, xb), x_te, batch),
            batched(lambda xb: ort_runtime.run_onnx(s8, xb), x_te, batch))


def _accuracy_gate(job: ExportJob, l32: np.ndarray, l8: np.ndarray, calibration: dict) -> None:
    """Record the INT8 figures; fail (exit code 4) if it lost more accuracy than allowed."""
    y_te, allowed = job.data.y_test, job.options.max_acc_drop
    acc32, acc8 = float((l32.argmax(1) == y_te).mean()), float((l8.argmax(1) == y_te).mean())
    drop = acc32 - acc8
    job.record["int8"] = {
        "calibration": calibration,
        "test_images": int(len(y_te)), "fp32_accuracy": acc32, "int8_accuracy": acc8, "accuracy_drop": drop,
        "max_accuracy_drop": allowed, "argmax_agreement_vs_fp32": float((l8.argmax(1) == l32.argmax(1)).mean()),
        "max_abs_diff_vs_fp32": float(np.abs(l8 - l32).max()), "passed": bool(drop <= allowed + 1e-12),
    }
    job.progress.log(f"INT8 accuracy {acc8 * 100:.2f}% vs FP32 {acc32 * 100:.2f}% on {len(y_te)} test images")
    if drop > allowed + 1e-12:
        raise CompressError(f"INT8 model loses {drop * 100:.2f} accuracy points on {len(y_te)} test images "
                            f"({acc32 * 100:.2f}% -> {acc8 * 100:.2f}%; allowed {allowed * 100:.2f}); "
                            "nothing written (raise `max_acc_drop` or export without `int8`)", EXIT_ACCURACY,
                            param=("max_acc_drop", "int8"))


def export_int8(job: ExportJob, keep: bool) -> None:
    """onnxruntime static quantization (QDQ, per-channel) calibrated on real images; accuracy-gated."""
    fp32 = job.path(ONNX_FILE, "onnx" in job.options.formats).resolve()
    out = job.path(INT8_FILE, keep).resolve()
    x_cal, source = _calibration_images(job)
    pre = (job.tmp / WORK_DIR / "model.pre.onnx").resolve()
    pre.parent.mkdir(parents=True, exist_ok=True)
    preprocessed = _pre_process(job, fp32, pre)
    _quantize(pre if preprocessed else fp32, out, x_cal, job.options.batch, pre.parent)
    l32, l8 = _test_accuracies(job, out, fp32)
    calibration = {"source": source, "split": "train", "images": int(len(x_cal)), **SETTINGS,
                   "pre_process": preprocessed}
    _accuracy_gate(job, l32, l8, calibration)
