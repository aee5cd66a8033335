"""INT8 that pays, decided by measurement: what the INT8 builders share.

Which INT8 scheme is fastest depends on the architecture and on the CPU (8-bit dot-product
instructions: VNNI, AMX), and on some CPUs no scheme beats FP32 at all. So each INT8 builder
(ONNX Runtime: :mod:`.ort_int8`; Paddle Inference through PaddleSlim: :mod:`.paddle_int8`) builds
every candidate scheme that applies, measures each one's test accuracy against the FP32 model
and its latency on this CPU (1 thread, batch 1, models in alternation), and :func:`decide` keeps
the fastest candidate within ``max_acc_drop`` of FP32 accuracy:

* ``int8="auto"``: only if it is faster than FP32; otherwise it says so plainly and writes none;
* ``int8="force"``: even if it is slower; if no candidate is accurate enough, the export fails
  (exit code 4) and writes nothing.

Every candidate's figures go into ``export.json`` (``int8.<runtime>.candidates``), with the CPU's
relevant flags (``int8.cpu``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import ModelData
from ..common.errors import EXIT_ACCURACY, CompressError
from ..measure.latency import cpu_features
from .job import ExportJob

CALIB_IMAGES = 256      # training images used to calibrate INT8, at most
MIN_CALIB_IMAGES = 64   # and at least (when there are that many)
CALIB_MACS = 32e9       # as many as fit this many multiply-accumulates (256 at 0.125 GMACs)
EVAL_IMAGES = 1000      # test images every candidate (and FP32) is scored on, at most (a seeded choice beyond)
# Latency of the candidates against FP32: 1 thread, batch 1, in alternation, in a fresh process.
# (max_seconds: ``ExportOptions.int8_seconds``)
TIMING = {"batch_sizes": (1,), "threads": 1, "warmup": 10, "min_runs": 20, "max_runs": 300}


@dataclass
class Candidate:
    """One INT8 scheme built for one runtime, with what was measured on it."""

    scheme: str
    runtime: str
    settings: dict = field(default_factory=dict)
    path: Path | None = None                 # where it was built (the export's scratch area)
    quantize_seconds: float | None = None
    accuracy: float | None = None
    accuracy_drop: float | None = None       # FP32 accuracy - INT8 accuracy (fraction)
    argmax_agreement: float | None = None    # with the FP32 model, on the test split
    max_abs_diff: float | None = None        # of logits, against the FP32 model
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    speedup: float | None = None             # FP32 p50 / INT8 p50
    error: str | None = None                 # it could not be built or run

    def accurate(self, max_drop: float) -> bool:
        return self.error is None and self.accuracy_drop is not None and self.accuracy_drop <= max_drop + 1e-12

    def to_json(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "path"}
        out["file"] = self.path.name if self.path else None
        return out


@dataclass
class Decision:
    """Which candidate is kept (None: none), and why, in one sentence."""

    chosen: Candidate | None
    message: str
    error: CompressError | None = None


def decide(cands: list[Candidate], mode: str, max_drop: float, runtime_label: str) -> Decision:
    """The fastest candidate within ``max_drop`` (see the module docstring)."""
    accurate = [c for c in cands if c.accurate(max_drop) and c.latency_ms_p50 is not None]
    tried = "; ".join(f"{c.scheme}: {_fig(c)}" for c in cands) or "none applies"
    if not accurate:
        failed = [c for c in cands if c.error]
        msg = (f"no INT8 model for {runtime_label}: {'; '.join(f'{c.scheme} failed: {c.error}' for c in failed)}"
               if cands and len(failed) == len(cands) else
               f"no INT8 scheme for {runtime_label} stays within {max_drop * 100:g} accuracy points of FP32 "
               f"({tried}); none written")
        err = None
        if mode == "force":
            err = CompressError(msg + " (raise `max_acc_drop`, or export without `int8`)", EXIT_ACCURACY,
                                param=("max_acc_drop", "int8"))
        return Decision(None, msg, err)
    best = min(accurate, key=lambda c: c.latency_ms_p50)
    if best.speedup is not None and best.speedup > 1.0:
        return Decision(best, f"{runtime_label} INT8: {best.scheme} kept, {best.speedup:.2f}x faster than FP32 "
                              f"on this CPU (tried: {tried})")
    if mode == "force":
        return Decision(best, f"{runtime_label} INT8: {best.scheme} kept as forced, although it is not faster "
                              f"than FP32 on this CPU ({best.speedup:.2f}x; tried: {tried})")
    return Decision(None, f"no INT8 scheme beats FP32 on {runtime_label} on this CPU (tried: {tried}); none "
                          "written (`int8_force` keeps the fastest accurate one anyway)")


def _fig(c: Candidate) -> str:
    if c.error:
        return "failed"
    speed = f"{c.speedup:.2f}x" if c.speedup is not None else "not timed"
    drop = f"{0.0 - c.accuracy_drop * 100:+.1f} points" if c.accuracy_drop is not None else "accuracy unknown"
    return f"{speed}, {drop}"


def calibration_images(job: ExportJob, macs: int | None = None) -> tuple[np.ndarray, str]:
    """Training images to calibrate on (a seeded choice; fewer for a large model), a whole number of batches
    for a fixed batch, through the model's own evaluation preprocessing. Returns (images, source)."""
    batch = job.options.batch
    source = job.options.calib_data or job.data.spec
    want = CALIB_IMAGES if not macs else max(MIN_CALIB_IMAGES, min(CALIB_IMAGES, int(CALIB_MACS / max(macs, 1))))
    key = ("calib", source, want)
    if key not in job.arrays:
        cdata = job.data if source == job.data.spec else \
            ModelData.open(source, job.input_shape, job.bundle.sidecar.preprocess)
        split = "train" if cdata.size("train") else "test"
        job.arrays[key] = cdata.arrays(split, want)[0]
    pool = job.arrays[key]
    n = len(pool)
    if batch != "dynamic":
        n = (n // int(batch)) * int(batch) or min(int(batch), len(pool))
    if n == 0 or (batch != "dynamic" and n < int(batch)):
        raise CompressError(f"calibration data {source!r} has too few images ({len(pool)}) for INT8")
    return pool[:n], source


def eval_split(job: ExportJob) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) the INT8 candidates are scored on: the test split, or EVAL_IMAGES of it (seeded);
    decoded once per export."""
    if "eval" not in job.arrays:
        job.arrays["eval"] = job.data.arrays("test", EVAL_IMAGES)
    return job.arrays["eval"]


def score(c: Candidate, l32: np.ndarray, l8: np.ndarray, y: np.ndarray) -> None:
    """Fill in a candidate's accuracy figures from its and the FP32 model's test logits."""
    acc32, acc8 = float((l32.argmax(1) == y).mean()), float((l8.argmax(1) == y).mean())
    c.accuracy, c.accuracy_drop = acc8, acc32 - acc8
    c.argmax_agreement = float((l8.argmax(1) == l32.argmax(1)).mean())
    c.max_abs_diff = float(np.abs(l8.astype(np.float64) - l32).max()) if np.isfinite(l8).all() else math.inf


def time_against(cands: list[Candidate], records: list[dict], fp32_label: str = "fp32") -> dict | None:
    """Fill in the candidates' latencies and speed-ups from ``measure_latency`` records; returns FP32's."""
    by = {r["label"]: r for r in records}
    fp32 = by.get(fp32_label)
    for c in cands:
        r = by.get(c.scheme)
        if r is not None:
            c.latency_ms_p50, c.latency_ms_p90 = r["latency_ms_p50"], r["latency_ms_p90"]
            c.speedup = fp32["latency_ms_p50"] / r["latency_ms_p50"] if fp32 else None
    return fp32


def int8_record(job: ExportJob) -> dict:
    """``export.json``'s ``int8`` section (created on first use): mode, budget, CPU."""
    def make() -> dict:
        timing = {**{k: list(v) if isinstance(v, tuple) else v for k, v in TIMING.items()},
                  "max_seconds": job.options.int8_seconds}
        return {"mode": job.options.int8, "max_accuracy_drop": job.options.max_acc_drop, "cpu": cpu_features(),
                "timing": timing}
    return job.record.int8_section(make)


def record_runtime(job: ExportJob, runtime: str, fp32: dict, cands: list[Candidate], decision: Decision,
                   calibration: dict) -> None:
    """Write one runtime's candidates and decision into ``export.json``; log the decision."""
    int8_record(job)[runtime] = {
        "fp32": fp32, "calibration": calibration, "candidates": [c.to_json() for c in cands],
        "chosen": decision.chosen.scheme if decision.chosen else None, "decision": decision.message}
    job.progress.log(decision.message.replace("`", ""))
