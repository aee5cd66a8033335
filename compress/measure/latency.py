"""Latency, measured, never estimated: exported models run on real runtimes, timed.

``measure_latency`` times several exported models *in alternation*: after a
warm-up, models take turns in round-robin (always the same order), so that
machine drift — other processes, frequency scaling, thermal throttling — hits
all models alike. Each run is timed with ``time.perf_counter_ns`` around the
runtime call, including copying the input in and the logits out. The result is
one record per (model, batch size) with the p50/p90/p99/mean latency in ms.
It is named steps: building the runners (:func:`build_runners`, on
:mod:`compress.runtimes`), the warm-up and the round-robin (:func:`warm_up`,
:func:`round_robin`) and the records (:func:`latency_records`).

From a benchmark script::

    from compress.measure.latency import measure_latency, machine_info
    recs = measure_latency([("original", "onnxruntime", "out/orig"),
                            ("keep0.5", "onnxruntime", "out/k05")], batch_sizes=(1,), threads=1)
    print(machine_info(threads=1))
"""
from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import os
import platform
import signal
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .._version import __version__
from ..common.errors import CompressError
from ..common.progress import NULL, Progress
from ..runtimes import Runner, engine, make_runner, runtime_label
from ..common.signals import die_with_parent, ignoring_sigint

MIN_WARMUP = 10
BURST = 20   # timed runs per turn of one model in the round-robin
REWARM = 5   # untimed runs that start each turn: a model switched back to needs ~5 runs to reach steady state


@dataclass(frozen=True)
class TimingOptions:
    """How latency is timed by default (``report``, ``sweep`` and their CLI flags read these)."""

    threads: int = 1                     # like a small edge CPU
    batch_sizes: tuple[int, ...] = (1, 32)
    warmup: int = MIN_WARMUP             # untimed runs per model first
    min_runs: int = 20                   # timed runs per model at least (the models alternate: 20 give a steady
                                         # p50; at real size 100 of batch 32 took minutes)
    max_seconds: float = 60.0            # time budget for all the timing, beyond the minimum runs
    onednn: bool = True                  # oneDNN on Paddle Inference


TIMING = TimingOptions()


@dataclass
class LatencyTarget:
    """One model on one runtime: ``label`` names it in the results (e.g. the model's name)."""

    label: str
    runtime: str
    export_dir: str | os.PathLike
    options: dict = field(default_factory=dict)

    @classmethod
    def coerce(cls, t) -> "LatencyTarget":
        if isinstance(t, LatencyTarget):
            return t
        if isinstance(t, (tuple, list)) and len(t) in (3, 4):
            return cls(str(t[0]), str(t[1]), t[2], dict(t[3]) if len(t) == 4 else {})
        raise CompressError(f"a benchmark target is (label, runtime, export_dir[, options]), got {t!r}")


@dataclass
class Timing:
    """How long and how often to time: the round-robin's settings (see :func:`measure_latency`)."""

    warmup: int = MIN_WARMUP
    min_runs: int = TIMING.min_runs
    max_runs: int | None = 1000
    burst: int = BURST
    rewarm: int = REWARM
    on_run: Callable[[str, int, int], None] | None = None

    def __post_init__(self):
        if self.warmup < MIN_WARMUP:
            raise CompressError(f"warm-up must be at least {MIN_WARMUP} runs per model, got {self.warmup}")
        if self.min_runs < 1:
            raise CompressError(f"`min_runs` must be at least 1, got {self.min_runs}", param="min_runs")
        if self.max_runs is not None and self.max_runs < self.min_runs:
            self.max_runs = self.min_runs

    def turn(self, n: int) -> int:
        """Timed runs in the next turn, clamped so as not to run past min_runs (while short of it) or max_runs."""
        turn = self.burst
        if n < self.min_runs:
            turn = min(turn, self.min_runs - n)
        if self.max_runs is not None:
            turn = min(turn, self.max_runs - n)
        return turn

    def stop(self, n: int, budget_end: float | None) -> str | None:
        """Why to stop after ``n`` runs of each model (``max_runs``, ``time``, ``min_runs``), or None."""
        if n < self.min_runs:
            return None
        if self.max_runs is not None and n >= self.max_runs:
            return "max_runs"
        if budget_end is not None and time.perf_counter() >= budget_end:
            return "time"
        if self.max_runs is None and budget_end is None:
            return "min_runs"
        return None


def percentiles_ms(samples_ns) -> dict:
    """p50/p90/p99/mean/min/max in milliseconds of a list of nanosecond timings."""
    a = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"latency_ms_p50": float(p50), "latency_ms_p90": float(p90), "latency_ms_p99": float(p99),
            "latency_ms_mean": float(a.mean()), "latency_ms_min": float(a.min()), "latency_ms_max": float(a.max())}


def _input_for(shape, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *shape), dtype=np.float32)


def _check_targets(targets: Iterable) -> list[LatencyTarget]:
    targets = [LatencyTarget.coerce(t) for t in targets]
    if not targets:
        raise CompressError("nothing to benchmark: no targets given")
    keys = [(t.label, t.runtime) for t in targets]
    if len(set(keys)) != len(keys):
        raise CompressError("benchmark targets must have distinct (label, runtime) pairs")
    return targets


def build_runners(targets: list[LatencyTarget], threads: int, onednn: bool, input_shape,
                  progress: Progress = NULL) -> list[tuple[LatencyTarget, Runner, tuple]]:
    """(target, runner, input shape C,H,W) for each target; the shape is ``input_shape`` or read from the file."""
    runners = []
    for t in targets:
        opts = dict(t.options)
        if engine(t.runtime) == "paddle":  # (INT8 needs oneDNN: that runner keeps it on)
            opts.setdefault("onednn", onednn)
        progress.log(f"loading {t.label} on {runtime_label(t.runtime)}")
        r = make_runner(t.runtime, t.export_dir, threads=threads, **opts)
        shape = input_shape or r.input_shape
        if shape is None:
            raise CompressError(f"{r.path}: cannot read the model's input shape (dynamic?); give the input shape (C,H,W)")
        runners.append((t, r, tuple(shape)))
    return runners


def _recent_p50(runners, samples) -> dict:
    """Progress-bar fields: each target's median of its last 50 runs, in ms."""
    return {f"{t.label} ms": float(np.median(s[-50:])) / 1e6 for (t, _, _), s in zip(runners, samples) if s}


def warm_up(runners, xs: list[np.ndarray], timing: Timing) -> None:
    """Untimed runs of every runner, in the same alternation as the timed runs."""
    for _ in range(timing.warmup):
        for (_, r, _), x in zip(runners, xs):
            r.run(x)


def round_robin(runners, xs: list[np.ndarray], batch: int, timing: Timing, budget_end: float | None,
                progress: Progress = NULL) -> tuple[list[list[int]], int, str]:
    """Time the runners in turns until ``timing`` says stop.

    Returns the per-runner timings (ns), the runs each made, and why it stopped.
    """
    samples: list[list[int]] = [[] for _ in runners]
    n = reported = 0
    clock = time.perf_counter_ns
    with progress.task(f"latency, batch {batch}", total=timing.max_runs if budget_end is None else None) as advance:
        while (stopped_by := timing.stop(n, budget_end)) is None:
            turn = timing.turn(n)
            for i, ((t, r, _), x) in enumerate(zip(runners, xs)):
                for _ in range(timing.rewarm):  # untimed: back to this model's steady state
                    r.run(x)
                for j in range(turn):
                    if timing.on_run is not None:
                        timing.on_run(t.label, batch, n + j)
                    t0 = clock()
                    r.run(x)
                    samples[i].append(clock() - t0)
            n += turn
            if n - reported >= 10:
                advance(n - reported, **_recent_p50(runners, samples))
                reported = n
        if n > reported:
            advance(n - reported, **_recent_p50(runners, samples))
    return samples, n, stopped_by


def latency_records(runners, samples, batch: int, seconds: float, stopped_by: str, timing: Timing) -> list[dict]:
    """One record per runner for one batch size (see :func:`measure_latency`)."""
    records = []
    for (t, r, shape), s in zip(runners, samples):
        rec = {"label": t.label, "runtime": t.runtime, "path": str(r.path), "batch": batch, "threads": r.threads,
               "input_shape": list(shape),
               **percentiles_ms(s), "runs": len(s), "warmup": timing.warmup, "seconds": seconds,
               "alternated_with": len(runners), "burst": timing.burst, "rewarm": timing.rewarm,
               "stopped_by": stopped_by}
        desc = r.describe()
        if "onednn" in desc:  # Paddle Inference's setting; other runtimes' options stay in their describe()
            rec["onednn"] = desc["onednn"]
        records.append(rec)
    return records


def measure_latency(
    targets: Iterable,
    batch_sizes=TIMING.batch_sizes,
    threads: int = TIMING.threads,
    warmup: int = TIMING.warmup,
    min_runs: int = TIMING.min_runs,
    max_runs: int | None = 1000,
    max_seconds: float | None = TIMING.max_seconds,
    input_shape=None,
    onednn: bool = TIMING.onednn,
    seed: int = 0,
    progress: Progress = NULL,
    on_run: Callable[[str, int, int], None] | None = None,
    burst: int = BURST,
    rewarm: int = REWARM,
) -> list[dict]:
    """Time exported models in alternation; one record per (target, batch size).

    ``targets``: ``(label, runtime, export_dir)`` tuples (or with a 4th item, the
    runner's options, e.g. ``{"onnx_file": "model.int8.onnx"}`` or ``{"onednn": False}``),
    or :class:`LatencyTarget` objects. Labels must be unique per runtime.

    For each batch size: ``warmup`` (at least 10) untimed runs of each target (in turn), then
    turns in round-robin: each turn gives one target ``rewarm`` untimed runs and then ``burst``
    timed runs, until every target has ``min_runs`` and either ``max_runs`` runs or the time
    budget is spent. Bursts measure the steady state a deployed model runs in: switched back
    to after another model (or after idling), a model's first runs are slow (on this machine
    ONNX Runtime took 1.3-1.6 ms for the first run of the ViT sample after Paddle runs, and
    about 5 runs to settle at 0.85 ms); the round-robin still spreads machine drift over all
    targets alike.
    ``min_runs`` wins over the budget. ``max_seconds`` is the budget for the whole
    call, shared among the batch sizes (unspent time passes on to the next).
    With neither ``max_runs`` nor ``max_seconds``, exactly ``min_runs`` are made.

    The input is random normal float32 of ``input_shape`` (C,H,W), or of the shape
    read from each model file. ``on_run(label, batch, iteration)`` is called before
    each timed run (the schedule, for checks).

    Each record: ``label``, ``runtime``, ``path``, ``batch``, ``threads``,
    ``input_shape`` (C,H,W), ``latency_ms_p50/p90/p99/mean/min/max``, ``runs``, ``warmup``,
    ``seconds`` (wall time of this batch size's timed loop, all targets), ``alternated_with`` (how many targets shared the
    schedule), ``stopped_by`` (``max_runs``, ``time`` or ``min_runs``), plus
    ``onednn`` for Paddle.
    """
    targets = _check_targets(targets)
    batch_sizes = [int(b) for b in batch_sizes]
    if not batch_sizes or min(batch_sizes) < 1:
        raise CompressError(f"batch sizes must be positive integers, got {batch_sizes}")
    timing = Timing(warmup, min_runs, max_runs, burst, rewarm, on_run)
    shape = tuple(int(v) for v in input_shape) if input_shape is not None else None
    runners = build_runners(targets, threads, onednn, shape, progress)
    records: list[dict] = []
    deadline = None if max_seconds is None else time.perf_counter() + float(max_seconds)
    for bi, batch in enumerate(batch_sizes):
        inputs = {s: _input_for(s, batch, seed + batch) for s in dict.fromkeys(s for _, _, s in runners)}
        xs = [inputs[s] for _, _, s in runners]
        warm_up(runners, xs, timing)
        budget_end = None
        if deadline is not None:
            remaining = max(0.0, deadline - time.perf_counter())
            budget_end = time.perf_counter() + remaining / (len(batch_sizes) - bi)
        start = time.perf_counter()
        samples, n, stopped_by = round_robin(runners, xs, batch, timing, budget_end, progress)
        seconds = time.perf_counter() - start
        records += latency_records(runners, samples, batch, seconds, stopped_by, timing)
        progress.log(f"batch {batch}: {n} runs of each of {len(runners)} models in {seconds:.1f} s")
    return records


def _measure_in_this_process(targets, kwargs):
    return measure_latency(targets, **kwargs)


def measure_latency_isolated(targets: Iterable, progress: Progress = NULL, **kwargs) -> list[dict]:
    """``measure_latency`` with each runtime in a fresh process of its own, one runtime after the other.

    Running Paddle Inference in a process slows ONNX Runtime in that process for good (seen here:
    the ViT sample's p50 went from 0.9 to 1.36 ms once Paddle runs were interleaved, with oneDNN
    on or off, OpenMP spin-waiting off or on), which would bias every cross-runtime figure. Within
    a runtime the models are still timed in alternation.
    """
    targets = [LatencyTarget.coerce(t) for t in targets]
    by_runtime: dict[str, list] = {}
    for t in targets:  # one process per engine: FP32 and INT8 ONNX models alternate in one process
        by_runtime.setdefault(engine(t.runtime), []).append(t)
    if kwargs.get("max_seconds") is not None:  # the time budget is shared among the runtimes
        kwargs = {**kwargs, "max_seconds": kwargs["max_seconds"] / len(by_runtime)}
    records = []
    for runtime, group in by_runtime.items():
        progress.log(f"timing {len(group)} model(s) on {runtime_label(runtime)} in a separate process")
        budget = kwargs.get("max_seconds")
        total = max(1, math.ceil(budget)) if budget else None
        with progress.task(f"timing on {runtime_label(runtime)}, seconds", total) as advance:
            records += _ticking(advance, total, _in_worker, _measure_in_this_process, group, kwargs)
    return records


def _ticking(advance, total: int | None, fn, *args):
    """``fn(*args)`` while a clock advances the progress bar once a second (the timing runs in a worker
    process, which cannot report): its time budget is the bar's length, so the bar shows the time left."""
    done, ticks = threading.Event(), [0]

    def tick():
        while not done.wait(1.0):
            if total is None or ticks[0] < total:
                ticks[0] += 1
                advance(1)

    clock = threading.Thread(target=tick, daemon=True)
    clock.start()
    try:
        return fn(*args)
    finally:
        done.set()
        clock.join()
        if total is not None and ticks[0] < total:
            advance(total - ticks[0])


def _worker_start(parent_pid: int) -> None:
    """In the timing worker: die with the parent (whatever ends it), and leave Ctrl-C to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)


def _in_worker(fn, *args):
    """``fn(*args)`` in a fresh process; the process is killed if this one is interrupted or fails."""
    ctx = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_worker_start,
                                                  initargs=(os.getpid(),))
    try:
        with ignoring_sigint():  # the worker starts with SIGINT ignored (a terminal's Ctrl-C reaches it too)
            future = pool.submit(fn, *args)
        result = future.result()
    except BaseException:
        for p in list((getattr(pool, "_processes", None) or {}).values()):
            p.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return result


def group_by_label(records: list[dict]) -> dict[str, list[dict]]:
    """``measure_latency`` records per label: ready to be a report entry's ``runtimes`` list."""
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["label"], []).append({k: v for k, v in r.items() if k != "label"})
    return out
# --------------------------------------------------------------------------- machine
# What decides which kernels (and which INT8 scheme) are fast: SIMD width, 8-bit dot products (VNNI on x86,
# asimddp on ARM), bfloat16, and Intel AMX tiles.
_CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
              "amx_int8", "amx_bf16", "neon", "asimd", "asimddp")
INT8_DOT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "asimddp")


def _cpuinfo() -> dict:
    info = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Hardware", "Processor", "cpu model") and "model" not in info and value:
            info["model"] = value
        elif key in ("flags", "Features") and "flags" not in info:
            have = set(value.split())
            info["flags"] = [f for f in _CPU_FLAGS if f in have]
    return info


def cpu_features() -> dict:
    """The CPU model, its flags from :data:`_CPU_FLAGS`, and ``int8_dot``: the fastest 8-bit dot-product
    instruction it has (``amx_int8``, ``avx512_vnni``, ``avx_vnni``, ``asimddp``), or None."""
    info = _cpuinfo()
    flags = info.get("flags", [])
    return {"model": info.get("model") or platform.processor() or platform.machine() or "unknown", "flags": flags,
            "int8_dot": next((f for f in INT8_DOT_FLAGS if f in flags), None)}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info(threads: int | None = None) -> dict:
    """What the latencies were measured on: CPU, cores, threads used, OS, Python, library versions."""
    cpu = cpu_features()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "cpu": cpu["model"],
        "cpu_flags": cpu["flags"],
        "cpu_int8_dot": cpu["int8_dot"],
        "architecture": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "threads": threads,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": {
            "compress": __version__,
            "paddlepaddle": _version("paddlepaddle") or _version("paddlepaddle-gpu"),
            "onnxruntime": _version("onnxruntime"),
            "paddle2onnx": _version("paddle2onnx"),
            "onnx": _version("onnx"),
            "numpy": _version("numpy"),
        },
    }
