"""Benchmark: how hard is the built-in ``shapes`` source for the shipped architectures?

Trains each shipped architecture on ``shapes`` (default 10,000 images: 6,000 / 2,000 / 2,000) at
3x32x32 with the default training settings (``compress train`` without options but the epochs and
the seed), and records the test and validation accuracy, each epoch's loss and validation accuracy,
and the wall time, with the CPU (its ``lscpu`` model name and SIMD flags). Results go to ``results/shapes_difficulty.json`` and a
markdown table to ``results/shapes_difficulty.md`` (and stdout).

    python benchmarks/shapes_difficulty.py                         # both archs, 15 epochs, seed 0
    python benchmarks/shapes_difficulty.py --archs vit_tiny --epochs 20 --data shapes:2000

Rows of other runs already in the results file are kept (archs can run in parallel processes).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from compress.measure.latency import machine_info
from compress.common.progress import Progress
from compress.training.config import FitConfig
from compress.workflows.train import train

ROOT = Path(__file__).resolve().parent.parent
# the recommended arch kwargs at 3x32x32: RGB input; the ViT keeps 64 tokens with 4x4 patches
ARCH_KWARGS = {"resnet_tiny": {"in_chans": 3}, "vit_tiny": {"in_chans": 3, "img_size": 32, "patch": 4}}
INPUT_SHAPE = (3, 32, 32)


def cpu_info() -> dict:
    """The machine as ``compress.measure.latency.machine_info`` records it (the model name ``lscpu`` shows)."""
    m = machine_info()
    return {"model_name": m["cpu"], "cpus": m["logical_cores"], "flags": m["cpu_flags"],
            "paddle": m["versions"]["paddlepaddle"], "python": m["python"]}


class EpochLog(Progress):
    """A progress sink that keeps the per-epoch lines ``train`` logs, with the time they came."""

    def __init__(self):
        self.lines, self.t0 = [], time.time()

    def log(self, msg: str) -> None:
        if msg.startswith("epoch "):
            self.lines.append(f"{msg} [{time.time() - self.t0:.0f} s]")
        print(msg, file=sys.stderr, flush=True)


def run(arch: str, data: str, epochs: int, seed: int) -> dict:
    log = EpochLog()
    with tempfile.TemporaryDirectory() as tmp:
        sc = train(Path(tmp) / "m.pdparams", arch=arch, arch_kwargs=ARCH_KWARGS[arch], data=data,
                   input_shape=INPUT_SHAPE, config=FitConfig(epochs=epochs, seed=seed, drop_path_rate=0.0), progress=log)
    return {"arch": arch, "arch_kwargs": ARCH_KWARGS[arch], "data": data, "epochs": epochs, "seed": seed,
            "test_accuracy": sc.metrics["test_accuracy"], "val_accuracy": sc.metrics["val_accuracy"],
            "seconds": round(time.time() - log.t0, 1), "epoch_log": log.lines}


def table(rows: list[dict], cpu: dict) -> str:
    out = [f"CPU: {cpu['model_name']} ({cpu['cpus']} logical CPUs, flags {' '.join(cpu['flags']) or '-'}), "
           f"Paddle {cpu['paddle']}; default `compress train` settings, input 3x32x32.", "",
           "| arch | --arch-kwargs | data | epochs | seed | test acc % | val acc % | wall time |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['arch']} | `{json.dumps(r['arch_kwargs'])}` | {r['data']} | {r['epochs']} | {r['seed']} "
                   f"| {100 * r['test_accuracy']:.2f} | {100 * r['val_accuracy']:.2f} | {r['seconds'] / 60:.1f} min |")
    return "\n".join(out)


def merged(path: Path, rows: list[dict]) -> list[dict]:
    """The rows already in ``path`` (runs of other archs/settings, e.g. from a parallel process), then ``rows``."""
    key = lambda r: (r["arch"], r["data"], r["epochs"], r["seed"])  # noqa: E731
    new = {key(r) for r in rows}
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    return [r for r in old if key(r) not in new] + rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--archs", default="resnet_tiny,vit_tiny")
    ap.add_argument("--data", default="shapes")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/shapes_difficulty"))
    a = ap.parse_args(argv)
    cpu = cpu_info()
    rows = [run(arch, a.data, a.epochs, int(s)) for arch in a.archs.split(",") for s in a.seeds.split(",")]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = merged(out.with_suffix(".json"), rows)
    out.with_suffix(".json").write_text(json.dumps({"cpu": cpu, "rows": rows}, indent=1))
    md = table(rows, cpu)
    out.with_suffix(".md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
