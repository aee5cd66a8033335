"""INT8 for ONNX Runtime: candidate schemes quantized from the verified FP32 ONNX model with
onnxruntime's quantizer, each calibrated on real training images, accuracy-gated and timed
(the decision: :mod:`.int8`). The kept one is ``model.int8.onnx``.

The schemes (measured on an Intel Xeon with AVX-512 VNNI and AMX, onnxruntime 1.32, 1 thread,
batch 1, random weights at 224x224; FP32 -> INT8 p50):

* ``qdq``: static, QDQ, per-channel S8 weights, U8 activations, MinMax calibration, on Conv,
  MatMul and Gemm; ``reduce_range`` (7-bit weights) on CPUs without an 8-bit dot-product
  instruction, as onnxruntime advises. ResNet-50 2.70x, MobileNetV2 1.50x, DeiT-tiny 1.60x.
* ``qdq-all``: the same on every op type onnxruntime can quantize, so activations stay INT8
  between convolutions (Add, Relu, Clip, pooling): ResNet-50 2.95x, MobileNetV2 2.73x. Offered
  for convolution-heavy models only: on DeiT-tiny it kept the top-1 class on only 61 % of the
  images and was slower than ``qdq`` (1.26x).
* ``dynamic``: weights quantized ahead, activations at run time, on MatMul and Gemm
  (``quantize_dynamic``), no calibration: DeiT-tiny 2.45x, the shipped small ViT 1.40x (where
  every static scheme was slower than FP32). Offered for MatMul-heavy models (most weights in
  MatMul/Gemm); on ResNet-50 it quantizes only the classifier (1.01x).

Not offered: QOperator format (slower than QDQ everywhere measured: ResNet-50 2.09x), S8
activations (ResNet-50 1.14x; onnxruntime: S8S8 is slow on x86), dynamic on convolutions
(ResNet-50 0.19x). Static schemes share one calibration pass (onnxruntime's calibration cache).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..measure.latency import measure_latency_isolated
from ..common.native import capture_stdout, quiet_logging
from ..runtimes import onnx as ort_runtime
from ..runtimes.layout import INT8_FILE, ONNX_FILE, WORK_DIR
from .int8 import (TIMING, Candidate, calibration_images, decide, eval_split, int8_record, record_runtime, score,
                   time_against)
from .job import INPUT_NAME, ExportJob, batched, first_line

CONV_MATMUL_GEMM = ("Conv", "MatMul", "Gemm")
# Calibration runs an augmented model (a ReduceMin/ReduceMax on every tensor) in batches: with 8 images a
# batch instead of 32, exporting ResNet-50 at 224x224 with INT8 peaked at 5.3 GB instead of 9.1 GB.
# (onnxruntime 1.32's CalibMaxIntermediateOutputs is no help: on reaching the count it clears the collected
# ranges without merging them, and calibration fails with "No data is collected".)
CALIB_BATCH = 8


@dataclass(frozen=True)
class WeightMix:
    """Weight elements of the graph's Conv and MatMul/Gemm nodes: which kind of model this is."""

    conv: int
    matmul: int

    @property
    def conv_heavy(self) -> bool:
        return self.conv >= self.matmul

    def describe(self) -> str:
        total = max(self.conv + self.matmul, 1)
        return f"{self.conv / total:.0%} of the weights in Conv, {self.matmul / total:.0%} in MatMul/Gemm"


@dataclass(frozen=True)
class OrtScheme:
    """One onnxruntime INT8 scheme: ``applies(mix)`` says why not (a reason) or None."""

    name: str
    kind: str                      # static | dynamic
    op_types: tuple | None         # None: every op type onnxruntime quantizes
    applies: Callable[[WeightMix], str | None]
    description: str


ORT_SCHEMES: dict[str, OrtScheme] = {
    "qdq": OrtScheme("qdq", "static", CONV_MATMUL_GEMM,
                     lambda mix: None if mix.conv + mix.matmul else "no Conv, MatMul or Gemm weights",
                     "static QDQ, per-channel INT8 weights, UINT8 activations, on Conv/MatMul/Gemm"),
    "qdq-all": OrtScheme("qdq-all", "static", None,
                         lambda mix: None if mix.conv and mix.conv_heavy else "not a convolution-heavy model",
                         "static QDQ, per-channel INT8 weights, UINT8 activations, on every quantizable op"),
    "dynamic": OrtScheme("dynamic", "dynamic", ("MatMul", "Gemm"),
                         lambda mix: None if mix.matmul and not mix.conv_heavy else "not a MatMul-heavy model",
                         "dynamic INT8 on MatMul/Gemm (weights ahead, activations at run time)"),
}


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
        size = CALIB_BATCH if batch == "dynamic" else int(batch)
        self._batches = [{input_name: np.ascontiguousarray(x[i:i + size])} for i in range(0, len(x), size)
                         if batch == "dynamic" or len(x[i:i + size]) == size]  # a fixed batch takes full ones only
        self._it = iter(self._batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._batches)

    def __len__(self):
        return len(self._batches)


def weight_mix(path: Path) -> WeightMix:
    import onnx  # optional heavy: only INT8 export reads the graph

    m = onnx.load(str(path), load_external_data=False)
    sizes = {t.name: int(np.prod(list(t.dims))) if t.dims else 1 for t in m.graph.initializer}
    conv = sum(sizes.get(n.input[1], 0) for n in m.graph.node if n.op_type == "Conv" and len(n.input) > 1)
    mm = sum(sizes.get(i, 0) for n in m.graph.node if n.op_type in ("MatMul", "Gemm") for i in n.input[:2])
    return WeightMix(conv, mm)


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


def settings(scheme: OrtScheme, reduce_range: bool) -> dict:
    if scheme.kind == "dynamic":
        return {"kind": "dynamic", "op_types": list(scheme.op_types), "per_channel": False, "weight_type": "QInt8"}
    return {"kind": "static", "format": "QDQ", "op_types": list(scheme.op_types) if scheme.op_types else "all",
            "per_channel": True, "weight_type": "QInt8", "activation_type": "QUInt8", "reduce_range": reduce_range,
            "calibrate_method": "MinMax"}


def _quantize(c: Candidate, scheme: OrtScheme, src: Path, reader: _CalibrationReader, cache: Path) -> None:
    """Build one candidate into ``c.path``; a failure is recorded on the candidate."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,  # optional heavy: INT8 only
                                          quantize_dynamic, quantize_static)

    t0 = time.perf_counter()
    try:
        with capture_stdout(), quiet_logging(), _cwd(c.path.parent):
            if scheme.kind == "dynamic":
                quantize_dynamic(str(src), str(c.path), op_types_to_quantize=list(scheme.op_types),
                                 per_channel=False, weight_type=QuantType.QInt8)
            else:
                reader.rewind()
                quantize_static(str(src), str(c.path), reader, quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=list(scheme.op_types) if scheme.op_types else None,
                                per_channel=True, reduce_range=c.settings["reduce_range"],
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache))
        if not c.path.is_file() or c.path.stat().st_size == 0:
            raise RuntimeError("the quantizer wrote no model")
    except Exception as e:  # noqa: BLE001 - one failed scheme must not stop the others
        c.error = f"quantization failed: {type(e).__name__}: {first_line(e)}"
    c.quantize_seconds = round(time.perf_counter() - t0, 2)


def _candidates(job: ExportJob, mix: WeightMix, reduce_range: bool) -> tuple[list, list[dict]]:
    """(schemes to build, static ones first and the widest calibration first; skipped ones with the reason)."""
    wanted = job.options.int8_schemes
    build, skipped = [], []
    for scheme in ORT_SCHEMES.values():
        why = scheme.applies(mix)
        if wanted and scheme.name not in wanted:
            why = "not among `int8_schemes`"
        if why:
            skipped.append({"scheme": scheme.name, "skipped": why})
        else:
            build.append((scheme, Candidate(scheme.name, "onnxruntime", settings(scheme, reduce_range))))
    build.sort(key=lambda sc: (sc[0].kind != "static", sc[0].op_types is not None))
    return build, skipped


def _score_all(job: ExportJob, fp32: Path, cands: list[Candidate]) -> np.ndarray:
    """Test-split logits of FP32 ONNX Runtime, and each candidate's accuracy figures."""
    (x, y), batch = eval_split(job), job.options.batch
    s32 = ort_runtime.onnx_session(fp32)
    l32 = batched(lambda xb: ort_runtime.run_onnx(s32, xb), x, batch)
    for c in cands:
        if c.error:
            continue
        try:
            s8 = ort_runtime.onnx_session(c.path)
            score(c, l32, batched(lambda xb: ort_runtime.run_onnx(s8, xb), x, batch), y)
        except Exception as e:  # noqa: BLE001
            c.error = f"onnxruntime cannot run it: {first_line(e)}"
    return l32


def _time_all(job: ExportJob, fp32: Path, cands: list[Candidate]) -> dict | None:
    ok = [c for c in cands if not c.error]
    if not ok:
        return None
    targets = [("fp32", "onnxruntime", fp32)] + [(c.scheme, "onnxruntime", c.path) for c in ok]
    job.progress.log(f"timing FP32 and {len(ok)} INT8 candidate(s) on ONNX Runtime (1 thread, batch 1)")
    recs = measure_latency_isolated(targets, input_shape=job.input_shape,
                                    **{**TIMING, "max_seconds": job.options.int8_seconds})
    fp32_rec = time_against(ok, recs)
    return {k: fp32_rec[k] for k in ("latency_ms_p50", "latency_ms_p90", "runs")} if fp32_rec else None


def export_int8(job: ExportJob, keep: bool) -> None:
    """Build the ONNX Runtime INT8 candidates that apply, measure them, keep the fastest accurate one."""
    fp32 = job.path(ONNX_FILE, "onnx" in job.options.formats).resolve()
    work = (job.tmp / WORK_DIR / "ort_int8").resolve()
    work.mkdir(parents=True, exist_ok=True)
    cpu = int8_record(job)["cpu"]
    mix = weight_mix(fp32)
    build, skipped = _candidates(job, mix, reduce_range=cpu["int8_dot"] is None)
    x_cal, source = calibration_images(job, job.bundle.sidecar.flops)
    pre = work / "model.pre.onnx"
    preprocessed = _pre_process(job, fp32, pre) if any(s.kind == "static" for s, _ in build) else None
    reader = _CalibrationReader(x_cal, job.options.batch, INPUT_NAME)
    for scheme, c in build:
        c.path = work / f"{scheme.name}.onnx"
        job.progress.log(f"INT8 candidate {scheme.name}: {scheme.description}")
        _quantize(c, scheme, pre if preprocessed else fp32, reader, work / "calibration.json")
    cands = [c for _, c in build]
    l32 = _score_all(job, fp32, cands)
    fp32_fig = {"accuracy": float((l32.argmax(1) == eval_split(job)[1]).mean()), "test_images": int(len(l32)),
                **(_time_all(job, fp32, cands) or {})}
    decision = decide(cands, job.options.int8, job.options.max_acc_drop, "ONNX Runtime")
    calibration = {"source": source, "split": "train", "images": int(len(x_cal)), "pre_process": preprocessed,
                   "weight_mix": mix.describe(), "skipped": skipped}
    record_runtime(job, "onnxruntime", fp32_fig, cands, decision, calibration)
    if decision.error is not None:
        raise decision.error
    if decision.chosen is not None:
        shutil.copyfile(decision.chosen.path, job.path(INT8_FILE, keep))


__all__ = ["ORT_SCHEMES", "OrtScheme", "WeightMix", "export_int8", "weight_mix"]
