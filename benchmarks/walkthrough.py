"""The README's walk-through, timed step by step as a user runs it: a 1000-class ResNet-18 checkpoint
(random weights: nothing is downloaded) fine-tuned at 224x224 on a generated photo folder, pruned and
healed with an export, and reported against the original.

    python benchmarks/walkthrough.py [--images 300] [--train-epochs 1] [--heal-epochs 1] [--seconds 20]
                                     [--work DIR] [--out benchmarks/results]

Each step is the console script in a fresh process (what a user waits for, imports included); the wall
time, the machine's CPU and its 1-minute load average before and after are recorded in
``OUT/walkthrough.json`` and ``OUT/walkthrough.md``. The photo folder is ``compress data make shapes``
(JPEGs, one folder per class, train/val/test), so the data path is the one users' photos take.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _step(name: str, args: list[str], steps: list[dict]) -> None:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "compress_cli", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"{name} failed ({res.returncode}): {res.stderr.strip().splitlines()[-1:]}")
    steps.append({"step": name, "command": "compress " + " ".join(args), "seconds": round(seconds, 1),
                  "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)})
    print(f"{name}: {seconds:.1f} s", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--train-epochs", type=int, default=1)
    ap.add_argument("--heal-epochs", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/compress-walkthrough"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    import paddle  # the random-weight "pretrained" checkpoint
    from paddle.vision.models import resnet18

    from compress.measure.latency import cpu_features

    w = a.work
    if w.exists():
        sys.exit(f"{w} exists: give another --work")
    w.mkdir(parents=True)
    paddle.seed(0)
    paddle.save(resnet18().state_dict(), str(w / "resnet18_imagenet.pdparams"))
    steps: list[dict] = []
    _step("make the photo folder", ["data", "make", "shapes", "--out", str(w / "photos"), "--count", str(a.images),
                                    "--size", "256"], steps)
    _step("train", ["train", str(w / "resnet18_imagenet.pdparams"), "--arch", "paddle.vision.models:resnet18",
                    "--input-shape", "3,224,224", "--data", str(w / "photos"), "--normalize", "imagenet",
                    "--augment", "standard", "--drop-path-rate", "0.1", "--epochs", str(a.train_epochs),
                    "--workers", "2", "--out", str(w / "r18.pdparams")], steps)
    _step("stats", ["stats", str(w / "r18.pdparams")], steps)
    _step("prune + heal + export", ["prune", str(w / "r18.pdparams"), "--keep", "0.75", "--epochs",
                                    str(a.heal_epochs), "--export", str(w / "r18_k075")], steps)
    _step("report", ["report", str(w / "r18.pdparams"), str(w / "r18_k075"), "--out", str(w / "report"),
                     "--seconds", str(a.seconds)], steps)
    rep = json.loads((w / "report" / "report.json").read_text())
    result = {"cpu": cpu_features()["model"], "cores": os.cpu_count(), "images": a.images, "train_epochs": a.train_epochs,
              "heal_epochs": a.heal_epochs, "steps": steps, "headline": rep["headline"]}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "walkthrough.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"CPU: {result['cpu']} ({result['cores']} logical cores); {a.images} images at 224x224 "
             f"(60/20/20), train {a.train_epochs} epoch(s), heal {a.heal_epochs} epoch(s), timing budget "
             f"{a.seconds:g} s.", "", "| step | seconds | load before / after |", "|---|---:|---|"]
    lines += [f"| {s['step']} | {s['seconds']} | {s['load_before']} / {s['load_after']} |" for s in steps]
    lines += ["", f"Headline: {rep['headline']}", ""]
    (a.out / "walkthrough.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
