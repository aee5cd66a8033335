"""Benchmark `compress export`: wall-clock, parity, INT8 vs FP32 accuracy, ONNX Runtime latency.

    python benchmarks/export_bench.py [MODEL.pdparams ...] [--runs 300] [--warmup 20] [--keep DIR]

Default models: sample_models/*.pdparams. For each model, everything is exported
(Paddle Inference, ONNX, INT8 ONNX with the static ``qdq`` scheme, forced so that it is kept whatever its
speed and, with ``max_acc_drop`` 1.0, whatever its accuracy, so the drop can be reported) into a temporary directory, then ONNX Runtime latency is measured at
batch 1 with one thread (intra_op_num_threads=1), after a warm-up, FP32 and INT8 in alternation so that
background load hits both alike (``compress.measure.latency.measure_latency``). Prints a markdown table on stdout; progress goes to stderr.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("POLYGRAPHY_AUTOINSTALL_DEPS", "0")


ROOT = Path(__file__).resolve().parents[1]


def latency(out: Path, warmup: int, runs: int) -> dict:
    """ONNX Runtime p50/p90 in ms, FP32 and INT8 in alternation, batch 1, one thread (compress.measure.latency)."""
    from compress.measure.latency import measure_latency

    recs = measure_latency([("fp32", "onnxruntime", out), ("int8", "onnxruntime", out, {"onnx_file": "model.int8.onnx"})],
                           batch_sizes=(1,), threads=1, warmup=warmup, min_runs=runs, max_runs=runs, max_seconds=None)
    return {r["label"]: {"p50": r["latency_ms_p50"], "p90": r["latency_ms_p90"], "runs": r["runs"]} for r in recs}


def bench(model: Path, warmup: int, runs: int, keep: Path | None) -> dict:
    from compress.export import export_model
    from compress.model.sidecar import read_sidecar

    work = Path(tempfile.mkdtemp(prefix="export_bench."))
    out = (keep / model.stem) if keep else work / "out"
    t0 = time.perf_counter()
    info = export_model(model, out, formats=("paddle", "onnx"), int8="force", int8_schemes="qdq", max_acc_drop=1.0,
                        force=True)
    wall = time.perf_counter() - t0
    sc = read_sidecar(model)
    lat = latency(out, warmup, runs)
    if not keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    par = info["parity"]["runtimes"]
    return {
        "model": model.name, "arch": sc["arch"]["spec"], "removed": len(sc.get("removed_blocks") or []),
        "wall": wall, "s": info["seconds"], "parity": par, "int8": info["int8"], "lat": lat,
        "graphs": info["graphs"], "sizes": {k: v["bytes"] for k, v in info["files"].items()},
    }


def table(rows: list[dict], warmup: int, runs: int) -> str:
    import onnxruntime
    import paddle

    head = ("| model | arch | export wall s (paddle / onnx / int8) | max abs diff PI / PI+oneDNN / ORT "
            "| argmax agree | FP32 acc | INT8 acc | drop (pts) | ORT FP32 p50 / p90 ms | ORT INT8 p50 / p90 ms "
            "| INT8 speed-up (p50) | ONNX / INT8 size KB |")
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in rows:
        p, s, lat = r["parity"], r["s"], r["lat"]
        ort = r["int8"]["onnxruntime"]
        q = next(c for c in ort["candidates"] if c["scheme"] == ort["chosen"])
        diffs = " / ".join(f"{p[k]['max_abs_diff']:.1e}" for k in ("paddle_inference", "paddle_inference_onednn",
                                                                    "onnxruntime") if k in p)
        agree = min(v["argmax_agreement"] for v in p.values())
        lines.append(
            f"| {r['model']} | {r['arch']} | {r['wall']:.1f} ({s.get('paddle', 0):.1f} / {s.get('onnx', 0):.1f} / "
            f"{s.get('onnx-int8', 0):.1f}) | {diffs} | {agree * 100:.1f}% on {p['onnxruntime']['n_inputs']} | "
            f"{ort['fp32']['accuracy'] * 100:.2f}% | {q['accuracy'] * 100:.2f}% | {q['accuracy_drop'] * 100:+.2f} | "
            f"{lat['fp32']['p50']:.3f} / {lat['fp32']['p90']:.3f} | {lat['int8']['p50']:.3f} / {lat['int8']['p90']:.3f} | "
            f"{lat['fp32']['p50'] / lat['int8']['p50']:.2f}x | "
            f"{r['sizes']['model.onnx'] / 1024:.0f} / {r['sizes']['model.int8.onnx'] / 1024:.0f} |")
    lines.append("")
    from compress.measure.latency import machine_info

    mi = machine_info(threads=1)
    lines.append(f"ONNX Runtime {onnxruntime.__version__}, Paddle {paddle.__version__}, {mi['cpu']} "
                 f"({mi['usable_cores']} usable cores); latency at batch 1, 1 thread, {warmup} warm-up runs, "
                 f"{runs} timed runs per model (FP32 and INT8 alternating). Accuracy on the model's test split; "
                 "parity on up to 256 test images against the dygraph model. Export wall time includes imports "
                 "and data loading for the first model.")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--keep", type=Path, default=None, help="Keep the exports under this directory.")
    args = ap.parse_args(argv)
    models = args.models or sorted((ROOT / "sample_models").glob("*.pdparams"))
    if not models:
        print("no models: give .pdparams paths (sample_models/ is empty)", file=sys.stderr)
        return 2
    if args.runs < 200:
        print("note: fewer than 200 timed runs", file=sys.stderr)
    from compress.common.errors import CompressError

    rows = []
    for m in models:
        print(f"exporting {m} ...", file=sys.stderr)
        try:
            rows.append(bench(m, args.warmup, args.runs, args.keep))
        except CompressError as e:
            print(f"{m}: {e}", file=sys.stderr)
    print(table(rows, args.warmup, args.runs))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
