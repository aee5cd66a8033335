"""Independent check of a report's ONNX Runtime figures: times every exported model.onnx of a
report directory with a plain onnxruntime loop (no compress code), batch 1, and compares the p50
with report.json.

    python benchmarks/check_report_timing.py compress-demo [--runs 300]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def time_onnx(path: Path, threads: int, runs: int, warmup: int = 200) -> float:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    for _ in range(warmup):
        sess.run(None, {inp.name: x})
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {inp.name: x})
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1000)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("report_dir")
    ap.add_argument("--runs", type=int, default=300)
    a = ap.parse_args(argv)
    root = Path(a.report_dir)
    rep = json.loads((root / "report.json").read_text())
    print("| model | report p50 ms | independent p50 ms | ratio |")
    print("|---|---|---|---|")
    for m in rep["models"]:
        rec = next((r for r in m["runtimes"] if r["runtime"] == "onnxruntime" and r["batch"] == 1), None)
        onnx = root / m["export_dir"] / "model.onnx"
        if rec is None or not onnx.is_file():
            continue
        mine = time_onnx(onnx, rec["threads"], a.runs)
        print(f"| {m['name']} | {rec['latency_ms_p50']:.3f} | {mine:.3f} | {mine / rec['latency_ms_p50']:.2f} |")


if __name__ == "__main__":
    main()
