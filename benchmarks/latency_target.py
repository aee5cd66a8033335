"""Benchmark for the latency target: the shipped transformer at keep 0.5 against the original,
p50 latency ratio (pruned / original) vs the FLOPs ratio, on Paddle Inference and ONNX Runtime,
batch 1, 1 thread, both models timed in alternation. Target: latency ratio <= 1.1 x FLOPs ratio.

    python benchmarks/latency_target.py [--model sample_models/vit_tiny.pdparams] [--runs 1000]

Pruning uses the default criterion without healing: latency does not depend on the weights.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from compress.measure.latency import machine_info, measure_latency_isolated
from compress.export import export_model
from compress.graph.flops import count_flops
from compress.workflows.prune import HealConfig, prune
from compress.model.bundle import load_model

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(ROOT / "sample_models/vit_tiny.pdparams"))
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/latency_target.json"))
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pruned = tmp / "pruned.pdparams"
        prune(a.model, keep=a.keep, out=pruned, heal=HealConfig(epochs=0))
        flops = {}
        for name, path in (("original", Path(a.model)), ("pruned", pruned)):
            b = load_model(path)
            flops[name] = count_flops(b.model, b.input_shape)[0]
            export_model(path, tmp / name)
        targets = [(n, rt, tmp / n) for n in ("original", "pruned") for rt in ("paddle", "onnxruntime")]
        recs = measure_latency_isolated(targets, batch_sizes=(1,), threads=a.threads, warmup=50, min_runs=a.runs,
                               max_runs=a.runs, max_seconds=None)
    p50 = {(r["label"], r["runtime"]): r["latency_ms_p50"] for r in recs}
    flops_ratio = flops["pruned"] / flops["original"]
    rows = []
    for rt in ("paddle", "onnxruntime"):
        ratio = p50[("pruned", rt)] / p50[("original", rt)]
        rows.append({"runtime": rt, "p50_original_ms": p50[("original", rt)], "p50_pruned_ms": p50[("pruned", rt)],
                     "latency_ratio": ratio, "flops_ratio": flops_ratio, "limit": 1.1 * flops_ratio,
                     "met": ratio <= 1.1 * flops_ratio})
    result = {"model": a.model, "keep": a.keep, "threads": a.threads, "runs": a.runs, "batch": 1,
              "flops": flops, "machine": machine_info(a.threads), "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(f"| runtime | p50 original ms | p50 keep {a.keep} ms | latency ratio | FLOPs ratio | limit (1.1x) | met |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['runtime']} | {r['p50_original_ms']:.3f} | {r['p50_pruned_ms']:.3f} | {r['latency_ratio']:.3f} | "
              f"{r['flops_ratio']:.3f} | {r['limit']:.3f} | {'yes' if r['met'] else 'no'} |")


if __name__ == "__main__":
    main()
