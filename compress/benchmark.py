"""Latency, measured, never estimated: exported models run on real runtimes, timed.

Runtimes live in a registry keyed by name (``RUNTIMES``): ``paddle`` (Paddle
Inference, oneDNN on by default) and ``onnxruntime`` (CPU execution provider).
A runner is built from an export directory (``DIR/paddle/model.json`` +
``model.pdiparams``, ``DIR/model.onnx``) and a thread count, and exposes
``run(x) -> logits``.

``measure_latency`` times several exported models *in alternation*: after a
warm-up, every iteration makes one timed run of each model in turn (always the
same order, so every timed run follows a run of a different model), so that
machine drift — other processes, frequency scaling, thermal throttling — hits
all models alike. Each run is timed with ``time.perf_counter_ns`` around the
runtime call, including copying the input in and the logits out. The result is
one record per (model, batch size) with the p50/p90/p99/mean latency in ms.

From a benchmark script::

    from compress.benchmark import measure_latency, machine_info
    recs = measure_latency([("original", "onnxruntime", "out/orig"),
                            ("keep0.5", "onnxruntime", "out/k05")], batch_sizes=(1,), threads=1)
    print(machine_info(threads=1))
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import CompressError
from .progress import NULL, Progress

RUNTIME_LABELS = {"paddle": "Paddle Inference", "onnxruntime": "ONNX Runtime"}
MIN_WARMUP = 10
_PADDLE_SUBDIR = "paddle"
_PADDLE_MODEL = "model.json"
_PADDLE_PARAMS = "model.pdiparams"
_ONNX_MODEL = "model.onnx"


# --------------------------------------------------------------------------- runners
class Runner:
    """One loaded model on one runtime. Subclasses set ``runtime``, ``path``, ``threads``."""

    runtime = "?"

    def __init__(self):
        self.path: Path | None = None
        self.threads = 1
        self.input_shape: tuple[int, ...] | None = None  # C,H,W when the model file says so

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {"runtime": self.runtime, "path": str(self.path), "threads": self.threads}


def _paddle_files(export: Path) -> tuple[Path, Path]:
    """Accept the export dir, its ``paddle/`` subdir or the ``model.json`` file itself."""
    if export.is_file() and export.suffix == ".json":
        model = export
    elif (export / _PADDLE_SUBDIR / _PADDLE_MODEL).is_file():
        model = export / _PADDLE_SUBDIR / _PADDLE_MODEL
    else:
        model = export / _PADDLE_MODEL
    params = model.with_suffix(".pdiparams")
    if not model.is_file() or not params.is_file():
        raise CompressError(f"{export}: no Paddle Inference model here (expected {_PADDLE_SUBDIR}/{_PADDLE_MODEL} "
                            f"and {_PADDLE_SUBDIR}/{_PADDLE_PARAMS}; run compress export first)")
    return model, params


def _onnx_file(export: Path, onnx_file: str = _ONNX_MODEL) -> Path:
    """Accept an ``.onnx`` file, or the export dir (``onnx_file`` inside it, default model.onnx)."""
    path = export if export.suffix == ".onnx" else export / onnx_file
    if not path.is_file():
        raise CompressError(f"{path}: no such ONNX model (run compress export first)")
    if path.stat().st_size == 0:
        raise CompressError(f"{path}: empty ONNX file (the export failed)")
    return path


def _static_chw(dims) -> tuple[int, ...] | None:
    """[batch, C, H, W] with dynamic batch -> (C, H, W); None if any other dim is unknown."""
    if dims is None or len(dims) < 2:
        return None
    rest = dims[1:]
    if all(isinstance(d, (int, np.integer)) and int(d) > 0 for d in rest):
        return tuple(int(d) for d in rest)
    return None


def _pir_input_shape(model_json: Path) -> tuple[int, ...] | None:
    """Best effort: the shape attribute of the first ``data`` op of a PIR ``model.json``."""
    try:
        program = json.loads(model_json.read_text())
    except (OSError, ValueError):
        return None

    def walk(node):
        if isinstance(node, dict):
            if str(node.get("#", "")).endswith(".data"):
                for attr in node.get("A") or []:
                    if isinstance(attr, dict) and attr.get("N") == "shape":
                        return (attr.get("AT") or {}).get("D")
            for v in node.values():
                found = walk(v)
                if found is not None:
                    return found
        elif isinstance(node, list):
            for v in node:
                found = walk(v)
                if found is not None:
                    return found
        return None

    return _static_chw(walk(program))


def _onnx_input_shape(path: Path) -> tuple[int, ...] | None:
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        inits = {i.name for i in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in inits]
        if not inputs:
            return None
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
        return _static_chw(dims)
    except Exception:  # noqa: BLE001 - a hint only; callers fall back to an explicit shape
        return None


class PaddleInferenceRunner(Runner):
    """Paddle Inference on CPU; input/output handles are created once and reused."""

    runtime = "paddle"

    def __init__(self, export_dir, threads: int = 1, onednn: bool = True):
        super().__init__()
        from .export import paddle_predictor  # the one place a Paddle Inference config is built

        model, params = _paddle_files(Path(export_dir))
        self.path, self.threads, self.onednn = model, int(threads), bool(onednn)
        try:
            self._predictor = paddle_predictor(model, params, onednn=self.onednn, threads=self.threads)
        except Exception as e:  # noqa: BLE001 - paddle raises many types; report one line
            raise CompressError(self._failure("cannot load", e)) from None
        names = self._predictor.get_input_names()
        if len(names) != 1:
            raise CompressError(f"{model}: the model has {len(names)} inputs ({', '.join(names)}); one image input is expected")
        self.input_name = names[0]
        self._input = self._predictor.get_input_handle(names[0])
        self._output = self._predictor.get_output_handle(self._predictor.get_output_names()[0])
        sibling = model.parent.parent / _ONNX_MODEL
        self.input_shape = _pir_input_shape(model) or (_onnx_input_shape(sibling) if sibling.is_file() else None)

    def _failure(self, what: str, e: Exception) -> str:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        hint = " (oneDNN is on: try again with oneDNN off)" if self.onednn else ""
        return f"{self.path}: Paddle Inference {what} the model: {msg}{hint}"

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        self._input.reshape(list(x.shape))
        self._input.copy_from_cpu(x)
        try:
            self._predictor.run()
        except Exception as e:  # noqa: BLE001
            raise CompressError(self._failure("cannot run", e)) from None
        return self._output.copy_to_cpu()

    def describe(self) -> dict:
        return {**super().describe(), "onednn": self.onednn}


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime, CPU execution provider, all graph optimisations.

    ``intra_op_num_threads=threads``, ``inter_op_num_threads=1``. Idle worker
    threads do not spin by default (``spinning=False``): a spinning pool would
    burn a core while the other models of an alternated benchmark run.
    """

    runtime = "onnxruntime"

    def __init__(self, export_dir, threads: int = 1, onnx_file: str = _ONNX_MODEL, spinning: bool = False):
        super().__init__()
        import onnxruntime as ort

        self.path, self.threads, self.spinning = _onnx_file(Path(export_dir), onnx_file), int(threads), bool(spinning)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise CompressError(f"{self.path}: ONNX Runtime cannot load the model: {msg}") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise CompressError(f"{self.path}: the model has {len(inputs)} inputs; one image input is expected")
        self.input_name = inputs[0].name
        self._output_name = self._session.get_outputs()[0].name
        self.input_shape = _static_chw(inputs[0].shape)

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self._session.run([self._output_name], {self.input_name: x})[0]

    def describe(self) -> dict:
        return {**super().describe(), "spinning": self.spinning}


RUNTIMES: dict[str, type[Runner]] = {
    "paddle": PaddleInferenceRunner,
    "onnxruntime": OnnxRuntimeRunner,
}


def make_runner(runtime: str, export_dir, threads: int = 1, **options) -> Runner:
    """Build a runner by registry name. ``options``: ``onednn`` (paddle), ``onnx_file``/``spinning`` (onnxruntime)."""
    if runtime not in RUNTIMES:
        raise CompressError(f"unknown runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    if int(threads) < 1:
        raise CompressError(f"threads must be at least 1, got {threads}")
    cls = RUNTIMES[runtime]
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "export_dir", "threads"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise CompressError(f"runtime {runtime!r} has no option {', '.join(unknown)} (it takes: {', '.join(sorted(accepted))})")
    return cls(export_dir, threads=threads, **options)


# --------------------------------------------------------------------------- measuring
@dataclass
class Target:
    """One model on one runtime: ``label`` names it in the results (e.g. the model's name)."""

    label: str
    runtime: str
    export_dir: str | os.PathLike
    options: dict = field(default_factory=dict)

    @classmethod
    def coerce(cls, t) -> "Target":
        if isinstance(t, Target):
            return t
        if isinstance(t, (tuple, list)) and len(t) in (3, 4):
            return cls(str(t[0]), str(t[1]), t[2], dict(t[3]) if len(t) == 4 else {})
        raise CompressError(f"a benchmark target is (label, runtime, export_dir[, options]), got {t!r}")


def percentiles_ms(samples_ns) -> dict:
    """p50/p90/p99/mean/min/max in milliseconds of a list of nanosecond timings."""
    a = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"latency_ms_p50": float(p50), "latency_ms_p90": float(p90), "latency_ms_p99": float(p99),
            "latency_ms_mean": float(a.mean()), "latency_ms_min": float(a.min()), "latency_ms_max": float(a.max())}


def _input_for(shape, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *shape), dtype=np.float32)


BURST = 20   # timed runs per turn of one model in the round-robin
REWARM = 5   # untimed runs that start each turn: a model switched back to needs ~5 runs to reach steady state


def measure_latency(
    targets: Iterable,
    batch_sizes=(1, 32),
    threads: int = 1,
    warmup: int = MIN_WARMUP,
    min_runs: int = 100,
    max_runs: int | None = 1000,
    max_seconds: float | None = 60.0,
    input_shape=None,
    onednn: bool = True,
    seed: int = 0,
    progress: Progress = NULL,
    on_run: Callable[[str, int, int], None] | None = None,
    burst: int = BURST,
    rewarm: int = REWARM,
) -> list[dict]:
    """Time exported models in alternation; one record per (target, batch size).

    ``targets``: ``(label, runtime, export_dir)`` tuples (or with a 4th item, the
    runner's options, e.g. ``{"onnx_file": "model.int8.onnx"}`` or ``{"onednn": False}``),
    or :class:`Target` objects. Labels must be unique per runtime.

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
    targets = [Target.coerce(t) for t in targets]
    if not targets:
        raise CompressError("nothing to benchmark: no targets given")
    keys = [(t.label, t.runtime) for t in targets]
    if len(set(keys)) != len(keys):
        raise CompressError("benchmark targets must have distinct (label, runtime) pairs")
    batch_sizes = [int(b) for b in batch_sizes]
    if not batch_sizes or min(batch_sizes) < 1:
        raise CompressError(f"batch sizes must be positive integers, got {batch_sizes}")
    if warmup < MIN_WARMUP:
        raise CompressError(f"warm-up must be at least {MIN_WARMUP} runs per model, got {warmup}")
    if min_runs < 1:
        raise CompressError(f"min_runs must be at least 1, got {min_runs}")
    if max_runs is not None and max_runs < min_runs:
        max_runs = min_runs
    if input_shape is not None:
        input_shape = tuple(int(v) for v in input_shape)

    runners = []
    for t in targets:
        opts = dict(t.options)
        if t.runtime == "paddle":
            opts.setdefault("onednn", onednn)
        progress.log(f"loading {t.label} on {RUNTIME_LABELS.get(t.runtime, t.runtime)}")
        r = make_runner(t.runtime, t.export_dir, threads=threads, **opts)
        shape = input_shape or r.input_shape
        if shape is None:
            raise CompressError(f"{r.path}: cannot read the model's input shape (dynamic?); give the input shape (C,H,W)")
        runners.append((t, r, tuple(shape)))

    records: list[dict] = []
    deadline = None if max_seconds is None else time.perf_counter() + float(max_seconds)
    for bi, batch in enumerate(batch_sizes):
        inputs = {}
        for _, _, shape in runners:
            if shape not in inputs:
                inputs[shape] = _input_for(shape, batch, seed + batch)
        xs = [inputs[shape] for _, _, shape in runners]

        # warm-up, in the same alternation as the timed runs
        for _ in range(warmup):
            for (t, r, _), x in zip(runners, xs):
                r.run(x)

        budget_end = None
        if deadline is not None:
            remaining = max(0.0, deadline - time.perf_counter())
            budget_end = time.perf_counter() + remaining / (len(batch_sizes) - bi)
        samples: list[list[int]] = [[] for _ in runners]
        start = time.perf_counter()
        n = reported = 0
        stopped_by = "min_runs"
        clock = time.perf_counter_ns
        with progress.task(f"latency, batch {batch}", total=max_runs if budget_end is None else None) as advance:
            while True:
                if n >= min_runs:
                    if max_runs is not None and n >= max_runs:
                        stopped_by = "max_runs"
                        break
                    if budget_end is not None and time.perf_counter() >= budget_end:
                        stopped_by = "time"
                        break
                    if max_runs is None and budget_end is None:
                        break
                turn = burst  # clamped so as not to run past min_runs (while short of it) or max_runs
                if n < min_runs:
                    turn = min(turn, min_runs - n)
                if max_runs is not None:
                    turn = min(turn, max_runs - n)
                for i, ((t, r, _), x) in enumerate(zip(runners, xs)):
                    for _ in range(rewarm):  # untimed: back to this model's steady state
                        r.run(x)
                    for j in range(turn):
                        if on_run is not None:
                            on_run(t.label, batch, n + j)
                        t0 = clock()
                        r.run(x)
                        samples[i].append(clock() - t0)
                n += turn
                if n - reported >= 10:
                    advance(n - reported, **_recent_p50(runners, samples))
                    reported = n
            if n > reported:
                advance(n - reported, **_recent_p50(runners, samples))
        seconds = time.perf_counter() - start
        for (t, r, shape), s in zip(runners, samples):
            rec = {"label": t.label, "runtime": t.runtime, "path": str(r.path), "batch": batch, "threads": r.threads,
                   "input_shape": list(shape),
                   **percentiles_ms(s), "runs": len(s), "warmup": warmup, "seconds": seconds,
                   "alternated_with": len(runners), "burst": burst, "rewarm": rewarm,
                   "stopped_by": stopped_by}
            if isinstance(r, PaddleInferenceRunner):
                rec["onednn"] = r.onednn
            records.append(rec)
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
    import concurrent.futures
    import multiprocessing

    targets = [Target.coerce(t) for t in targets]
    by_runtime: dict[str, list] = {}
    for t in targets:
        by_runtime.setdefault(t.runtime, []).append(t)
    if kwargs.get("max_seconds") is not None:  # the time budget is shared among the runtimes
        kwargs = {**kwargs, "max_seconds": kwargs["max_seconds"] / len(by_runtime)}
    records = []
    ctx = multiprocessing.get_context("spawn")
    for runtime, group in by_runtime.items():
        progress.log(f"timing {len(group)} model(s) on {RUNTIME_LABELS.get(runtime, runtime)} in a separate process")
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            records += pool.submit(_measure_in_this_process, group, kwargs).result()
    return records


def _recent_p50(runners, samples) -> dict:
    """Progress-bar fields: each target's median of its last 50 runs, in ms."""
    return {f"{t.label} ms": float(np.median(s[-50:])) / 1e6 for (t, _, _), s in zip(runners, samples) if s}


def group_by_label(records: list[dict]) -> dict[str, list[dict]]:
    """``measure_latency`` records per label: ready to be a report entry's ``runtimes`` list."""
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["label"], []).append({k: v for k, v in r.items() if k != "label"})
    return out


# --------------------------------------------------------------------------- machine
_CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "neon", "asimd")


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


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info(threads: int | None = None) -> dict:
    """What the latencies were measured on: CPU, cores, threads used, OS, Python, library versions."""
    from . import __version__

    cpu = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "cpu": cpu.get("model") or platform.processor() or platform.machine() or "unknown",
        "cpu_flags": cpu.get("flags", []),
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
