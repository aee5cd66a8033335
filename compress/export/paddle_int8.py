"""Paddle-native INT8 through PaddleSlim: ``paddle-int8/model.pdmodel`` + ``model.pdiparams``.

PaddleSlim 2.6.0 (its last release) predates Paddle 3 and has no PIR support, but its post-training
quantization works in legacy mode (checked with Paddle 3.3.1, Python 3.11): with
``FLAGS_enable_pir_api=0`` set before paddle is imported, ``paddleslim.quant.quant_post_static``
quantizes the legacy FP32 model (``paddle-legacy/``, :mod:`.legacy`) given feed dicts through
``data_loader=`` (``batch_generator=`` fails on Paddle 3) and ``onnx_format=False`` (the fake-quant
format, which Paddle Lite's opt converts; the QDQ one hits Lite's crashes); Paddle Inference runs the
result with oneDNN's INT8 kernels. Each quantization runs in a legacy-mode subprocess of its own
(:mod:`.legacy_worker`; repeated PTQ runs in one process leaked memory), so the PIR path stays
untouched.

Each scheme is calibrated on real training images, scored on the test split against the FP32
legacy model in Paddle Inference (oneDNN) and timed against it (1 thread, batch 1, in alternation);
:mod:`.int8` keeps the fastest one within ``max_acc_drop``, and only if it beats FP32 (unless forced).
Paddle Inference users run it with ``config.enable_mkldnn(); config.enable_mkldnn_int8({"conv2d",
"fused_conv2d", "fc", "matmul", "matmul_v2"})``: oneDNN's default op set wrecked small ViTs (97.2 % ->
9.7 %; :data:`compress.runtimes.paddle.MKLDNN_INT8_OPS`). Paddle Lite users convert it for ARM with
``paddle_lite_opt`` (Lite's x86 build runs INT8 models at chance accuracy, so it cannot be checked here).
"""
from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..common.errors import CompressError
from ..measure.latency import measure_latency_isolated
from ..runtimes import paddle as paddle_runtime
from ..runtimes.layout import LEGACY_MODEL, PADDLE_INT8_MODEL, WORK_DIR
from ..runtimes.paddle import MKLDNN_INT8_OPS
from .int8 import (TIMING, Candidate, calibration_images, decide, eval_split, int8_record, record_runtime, score,
                   time_against)
from .job import ExportJob, batched, verify_threads
from .legacy import run_worker
from .parity import compare

QUANTIZABLE_OPS = ["conv2d", "depthwise_conv2d", "mul", "matmul", "matmul_v2"]
INSTALL_HINT = "pip install 'compress-edge[paddleslim]'"


@dataclass(frozen=True)
class PaddleScheme:
    """One PaddleSlim PTQ recipe (``quant_post_static`` keyword arguments); ``default``: tried unless
    ``int8_schemes`` names others."""

    name: str
    settings: dict = field(default_factory=dict)
    default: bool = True
    description: str = ""


PADDLE_SCHEMES: dict[str, PaddleScheme] = {
    # abs_max: as accurate as avg, hist, KL or mse where measured (KL and mse took 50-250 s), and the smallest
    # logit error on a trained ResNet-18 (2.8 vs 7.7 for avg); min_max writes no quantization ops at all.
    "slim-abs-max": PaddleScheme("slim-abs-max", {"algo": "abs_max", "onnx_format": False,
                                                  "weight_quantize_type": "channel_wise_abs_max",
                                                  "quantizable_op_type": QUANTIZABLE_OPS},
                                 description="PaddleSlim PTQ, maximum activation ranges, per-channel weights"),
    "slim-avg": PaddleScheme("slim-avg", {"algo": "avg", "onnx_format": False,
                                          "weight_quantize_type": "channel_wise_abs_max",
                                          "quantizable_op_type": QUANTIZABLE_OPS}, default=False,
                             description="PaddleSlim PTQ, averaged activation ranges, per-channel weights"),
}


def _schemes(job: ExportJob) -> list[PaddleScheme]:
    wanted = job.options.int8_schemes
    if wanted:
        return [s for s in PADDLE_SCHEMES.values() if s.name in wanted]
    return [s for s in PADDLE_SCHEMES.values() if s.default]


def _inputs(job: ExportJob, work: Path) -> tuple[dict, dict]:
    """The worker's arrays (calibration, test and parity images) as .npz files; (paths, calibration record)."""
    x_cal, source = calibration_images(job, job.bundle.sidecar.flops)
    paths = {k: work / f"{k}.npz" for k in ("calib", "test", "parity")}
    for k, x in (("calib", x_cal), ("test", eval_split(job)[0]), ("parity", job.x_parity)):
        np.savez(paths[k], x=x)
    return paths, {"source": source, "split": "train", "images": int(len(x_cal))}


def _build(job: ExportJob, scheme: PaddleScheme, fp32: Path, work: Path, paths: dict, l32: np.ndarray) -> Candidate:
    """One scheme quantized in its own legacy-mode subprocess and scored; a failure is recorded on it."""
    c = Candidate(scheme.name, "paddle", {**scheme.settings, "mkldnn_int8_ops": list(MKLDNN_INT8_OPS)},
                  path=work / scheme.name)
    outputs = work / f"{scheme.name}.npz"
    try:
        answer = run_worker(job, f"ptq_{scheme.name}", {"task": "ptq", **paths, "fp32": fp32, "out": c.path,
                                                        "batch": job.options.batch, "outputs": outputs,
                                                        "scheme": {"name": scheme.name, "settings": scheme.settings}},
                            f"PaddleSlim INT8 ({scheme.name})")
    except CompressError as e:
        c.error = str(e).removesuffix("; nothing written")
        return c
    c.quantize_seconds = answer["quantize_seconds"]
    out = np.load(outputs)
    score(c, l32, out["test"], eval_split(job)[1])
    c.settings["parity_vs_source"] = compare(job.ref, out["parity"], job.options.tolerance)
    return c


def _fp32_logits(job: ExportJob, fp32: Path) -> np.ndarray:
    """The legacy FP32 model's test logits in Paddle Inference with oneDNN: the accuracy INT8 is held to."""
    pred = paddle_runtime.paddle_predictor(fp32 / "model.pdmodel", fp32 / "model.pdiparams", onednn=True,
                                           threads=verify_threads())
    handles = paddle_runtime.io_handles(pred)
    return batched(lambda xb: paddle_runtime.run_paddle_inference(pred, xb, handles), eval_split(job)[0],
                   job.options.batch)


def _time(job: ExportJob, fp32: Path, cands: list[Candidate]) -> dict:
    ok = [c for c in cands if not c.error]
    if not ok:
        return {}
    job.progress.log(f"timing FP32 and {len(ok)} INT8 candidate(s) on Paddle Inference (1 thread, batch 1)")
    targets = [("fp32", "paddle-legacy", fp32)] + [(c.scheme, "paddle-int8", c.path) for c in ok]
    recs = measure_latency_isolated(targets, input_shape=job.input_shape,
                                    **{**TIMING, "max_seconds": job.options.int8_seconds})
    rec = time_against(ok, recs)
    return {k: rec[k] for k in ("latency_ms_p50", "latency_ms_p90", "runs")} if rec else {}


def paddleslim_installed() -> bool:
    return importlib.util.find_spec("paddleslim") is not None


def _skip(job: ExportJob, schemes: list) -> bool:
    """Record why Paddle INT8 cannot be built here (PaddleSlim missing, no scheme asked for); True if so."""
    if paddleslim_installed() and schemes:
        return False
    why = f"paddleslim is not installed ({INSTALL_HINT})" if schemes else "no PaddleSlim scheme among `int8_schemes`"
    if job.options.int8 == "force" and schemes:
        raise CompressError(f"Paddle INT8 needs PaddleSlim: {why}")
    int8_record(job)["paddle"] = {"skipped": why}
    job.progress.log(f"Paddle INT8 skipped: {why.replace('`', '')}")
    return True


def _publish(src: Path, dst_model: Path) -> None:
    dst_model.parent.mkdir(parents=True, exist_ok=True)
    for name in ("model.pdmodel", "model.pdiparams"):
        shutil.copyfile(src / name, dst_model.parent / name)


def export_paddle_int8(job: ExportJob, keep: bool) -> None:
    """PaddleSlim INT8 candidates of the legacy FP32 model, measured; the fastest accurate one kept."""
    schemes = _schemes(job)
    if _skip(job, schemes):
        return
    fp32 = job.path(LEGACY_MODEL, "paddle-legacy" in job.options.formats).resolve().parent
    work = (job.tmp / WORK_DIR / "paddle_int8").resolve()
    work.mkdir(parents=True, exist_ok=True)
    paths, calibration = _inputs(job, work)
    l32 = _fp32_logits(job, fp32)
    cands = []
    for s in schemes:
        job.progress.log(f"Paddle INT8 candidate {s.name}: {s.description} (legacy mode)")
        cands.append(_build(job, s, fp32, work, paths, l32))
    fp32_fig = {"accuracy": float((l32.argmax(1) == eval_split(job)[1]).mean()), "test_images": int(len(l32)),
                **_time(job, fp32, cands)}
    decision = decide(cands, job.options.int8, job.options.max_acc_drop, "Paddle Inference")
    record_runtime(job, "paddle", fp32_fig, cands, decision, calibration)
    if decision.error is not None:
        raise decision.error
    if decision.chosen is not None:
        _publish(decision.chosen.path, job.path(PADDLE_INT8_MODEL, keep))
