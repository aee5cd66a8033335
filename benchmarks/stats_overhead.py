"""Benchmark: what recording survival statistics costs, as a share of the training step time.

For each model, the same seeded start and the same batches are trained for N steps (after a
warm-up) under DropPath in three configurations, each on its own copy of the model:

* ``off``: DropPath on (StochasticDepth attached, uniform rate), no statistics;
* ``stats``: DropPath + survival statistics (masks and per-sample losses), no residual-ratio probe;
* ``stats+probe``: the same with the residual-ratio probe (what ``compress train`` records).

The configurations are interleaved step by step (rotating order), so the load of a shared machine
falls on all three alike; the reading of the statistics at the end (where a host sync is deferred,
it happens there) is timed and spread over the steps. Overhead = step time with
statistics / the same step without - 1, the median over steps (the ratios of median and of
mean step times are reported too).

    python benchmarks/stats_overhead.py                                 # samples + resnet18 at 224
    python benchmarks/stats_overhead.py --models resnet_tiny --steps 30 --out /tmp/x.json
    python benchmarks/stats_overhead.py --ops                           # the norm ops alone
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paddle

from compress.graph.blocks import find_blocks
from compress.data import load_data
from compress.model.bundle import load_model
from compress.training.droppath import StochasticDepth
from compress.training.config import FitConfig
from compress.training.loop import DepthRun, train_step
from compress.training.optimizer import make_optimizer

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("off", "stats", "stats+probe")
RATE = 0.2


def cpu_info() -> dict:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return {"model_name": fields.get("Model name", "?").strip(), "cpus": fields.get("CPU(s)", "?").strip(),
            "flags": [f for f in flags if f.startswith(("avx", "amx")) or "vnni" in f],
            "paddle": paddle.__version__, "python": platform.python_version(),
            "threads": paddle.get_flags(["FLAGS_paddle_num_threads"]).get("FLAGS_paddle_num_threads")}


def sample(name: str, batch: int, n: int):
    """A shipped sample: its sidecar's architecture and input shape, digits batches."""
    bundle = load_model(ROOT / "sample_models" / f"{name}.pdparams")
    shape = bundle.input_shape
    data = load_data("digits", shape)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(n):
        idx = rng.choice(len(data.y_train), batch, replace=False)
        batches.append((data.x_train[idx], data.y_train[idx].astype(np.int64)))
    return bundle.model, shape, batches


def resnet18_224(batch: int, n: int):
    """paddle.vision resnet18 at 224x224 (10 classes), synthetic batches."""
    paddle.seed(0)
    model = paddle.vision.models.resnet18(num_classes=10)
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((batch, 3, 224, 224)).astype(np.float32),
                rng.integers(0, 10, batch).astype(np.int64)) for _ in range(n)]
    return model, (3, 224, 224), batches


MODELS = {
    "resnet_tiny": lambda a: sample("resnet_tiny", a.batch, a.warmup + a.steps),
    "vit_tiny": lambda a: sample("vit_tiny", a.batch, a.warmup + a.steps),
    "resnet18@224": lambda a: resnet18_224(a.batch_224, a.warmup_224 + a.steps_224),
}


class Run:
    """One configuration on its own copy of the model (same start, same optimizer settings)."""

    def __init__(self, build, state, blocks, config: str):
        self.model, _, _ = build()
        self.model.set_state_dict(state)
        self.model.train()
        self.cfg = FitConfig(epochs=0, drop_path_rate=RATE, seed=0)
        self.opt, _ = make_optimizer(self.model, self.cfg, 1)
        if config == "off":
            self.depth, self.sd = None, StochasticDepth(self.model, blocks, None).attach()
            self.sd.rates = np.full(len(blocks), RATE)
        else:
            self.depth = DepthRun(self.model, blocks, self.cfg)
            self.depth.sd.residual_ratio = config == "stats+probe"
            self.depth.start_epoch(0, 1)
            self.sd = self.depth.sd

    def step(self, xb, yb) -> float:
        t0 = time.perf_counter()
        loss, per_sample = train_step(self.model, self.opt, xb, yb, self.cfg, 1.0 / len(yb))
        float(loss)
        if self.depth is not None:
            self.depth.record(len(yb), per_sample)
        return time.perf_counter() - t0

    def read(self) -> float:
        """Reading the statistics (where a host sync is deferred, it happens here): seconds."""
        t0 = time.perf_counter()
        if self.depth is not None:
            self.depth.stats.summary()
        return time.perf_counter() - t0


def bench(name: str, a) -> dict:
    """The three configurations, each on its own model copy, interleaved step by step (rotating order),
    so the load of a shared machine falls on all three alike; the median step time per configuration."""
    build = lambda: MODELS[name](a)  # noqa: E731 - the same seeded model and batches every time
    model, shape, batches = build()
    blocks = find_blocks(model, shape)
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    warmup = a.warmup_224 if "224" in name else a.warmup
    runs = {c: Run(build, state, blocks, c) for c in CONFIGS}
    times = {c: [] for c in CONFIGS}
    for k, (xb, yb) in enumerate(batches):
        order = CONFIGS[k % 3:] + CONFIGS[:k % 3]  # rotate, so no configuration always runs first
        for c in order:
            dt = runs[c].step(xb, yb)
            if k >= warmup:
                times[c].append(dt)
    steps = len(batches) - warmup
    read = {c: runs[c].read() for c in CONFIGS}
    for r in runs.values():
        r.sd.detach()
    # per step: median step time plus the end-of-run read spread over the steps
    med = {c: statistics.median(times[c]) + read[c] / steps for c in CONFIGS}
    q = {c: np.percentile(times[c], [25, 75]) for c in CONFIGS}
    print(f"{name}: " + ", ".join(f"{c} {med[c] * 1e3:.2f} ms" for c in CONFIGS), file=sys.stderr, flush=True)
    return {"model": name, "input_shape": list(shape), "blocks": len(blocks),
            "droppath": sorted({b.droppath for b in blocks}), "batch": len(batches[0][1]),
            "steps": steps, "warmup": warmup,
            "ms_per_step": {c: round(med[c] * 1e3, 3) for c in CONFIGS},
            "ms_iqr": {c: [round(x * 1e3, 3) for x in q[c]] for c in CONFIGS},
            "read_ms": {c: round(read[c] * 1e3, 3) for c in CONFIGS},
            "overhead_pct": {c: round(100 * (med[c] / med["off"] - 1), 2) for c in CONFIGS[1:]},
            "overhead_pct_mean": {c: round(100 * (np.mean(times[c]) / np.mean(times["off"]) - 1), 2)
                                  for c in CONFIGS[1:]},
            "overhead_pct_paired": paired(times, read, steps),
            "times_s": {c: [round(t, 6) for t in times[c]] for c in CONFIGS}}


def paired(times: dict, read: dict, steps: int) -> dict:
    """Median over steps of (step with statistics / the same step without, run next to it) - 1:
    the two ran seconds apart, so a load change on the shared machine cancels out."""
    off = np.asarray(times["off"])
    return {c: round(100 * (float(np.median((np.asarray(times[c]) + read[c] / steps) / off)) - 1), 2)
            for c in CONFIGS[1:]}


def table(result: dict) -> str:
    cpu = result["cpu"]
    out = [f"# Cost of recording survival statistics ({result['label']})", "",
           f"CPU: {cpu['model_name']} ({cpu['cpus']} CPUs, shared with other jobs; flags: {' '.join(cpu['flags'])}); "
           f"paddle {cpu['paddle']}, Python {cpu['python']}; git {result['git']}.", "",
           f"DropPath at a uniform rate {RATE}; the three configurations on their own model copies, interleaved step "
           f"by step, {result['rows'][0]['steps']} steps after warm-up (resnet18@224: {result['rows'][-1]['steps']}); "
           "the reading of the statistics at the end is spread over the steps. Overhead: median over steps of "
           "(step time with statistics / the step without, run next to it) - 1; in brackets the ratio of median "
           "and of mean step times, which load changes on the shared machine move more.", "",
           "| model | blocks | DropPath | input, batch | step, off | + statistics | + statistics + residual probe |",
           "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        ms, ov, mean = r["ms_per_step"], r["overhead_pct"], r["overhead_pct_mean"]
        pr = r.get("overhead_pct_paired") or paired(r["times_s"], {c: r["read_ms"][c] / 1e3 for c in CONFIGS},
                                                    r["steps"])
        cell = {c: f"{ms[c]:.1f} ms, **{pr[c]:+.1f} %** [{ov[c]:+.1f} %, {mean[c]:+.1f} %]" for c in CONFIGS[1:]}
        out.append(f"| {r['model']} | {r['blocks']} | {'/'.join(r['droppath'])} | "
                   f"{'x'.join(map(str, r['input_shape']))}, {r['batch']} | {ms['off']:.1f} ms | "
                   f"{cell['stats']} | {cell['stats+probe']} |")
    return "\n".join(out) + "\n"


def op_costs(out: Path, n: int = 50) -> str:
    """Milliseconds per call of the ways to take per-sample norms of a 64x16x16x16 block input."""
    x = paddle.randn([64, 16, 16, 16])
    ways = {"paddle.linalg.norm(x.flatten(1), axis=1) (p_norm)": lambda: paddle.linalg.norm(x.flatten(1), axis=1),
            "paddle.linalg.vector_norm(x, axis=[1, 2, 3])": lambda: paddle.linalg.vector_norm(x, axis=[1, 2, 3]),
            "paddle.square(x.flatten(1)).sum(axis=1) (squared)": lambda: paddle.square(x.flatten(1)).sum(axis=1)}
    lines = ["| per-sample norm of a 64x16x16x16 tensor | ms per call |", "|---|---|"]
    with paddle.no_grad():
        for name, f in ways.items():
            f()
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            lines.append(f"| `{name}` | {(time.perf_counter() - t0) / n * 1e3:.2f} |")
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batch", type=int, default=64, help="digits batch for the samples")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch-224", type=int, default=16)
    ap.add_argument("--steps-224", type=int, default=6)
    ap.add_argument("--warmup-224", type=int, default=2)
    ap.add_argument("--label", default="after")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/stats_overhead.json"))
    ap.add_argument("--render", metavar="JSON", help="only re-write the markdown table of a results file")
    ap.add_argument("--ops", action="store_true", help="only time the per-sample norm ops (results/stats_overhead_ops.md)")
    return ap


def main(argv=None):
    a = parser().parse_args(argv)
    if a.ops:
        print(op_costs(ROOT / "benchmarks/results/stats_overhead_ops.md"))
        return
    if a.render:
        result = json.loads(Path(a.render).read_text())
        Path(a.render).with_suffix(".md").write_text(table(result))
        print(table(result))
        return
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    result = {"label": a.label, "git": git, "cpu": cpu_info(), "rate": RATE,
              "rows": [bench(m, a) for m in a.models.split(",")]}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(table(result))
    print(table(result))


if __name__ == "__main__":
    main()
