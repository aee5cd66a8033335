"""Benchmark: branch-level against block-level pruning at (about) equal FLOPs, after the same healing.

For each architecture and seed, two pipelines start from the same point (the shipped sample's weights for
``vit_tiny``; a fresh seeded model for a third-party one given as ``module:Class``):

* block:  ``train --granularity block`` (DropPath + statistics per block), ``prune --keep-flops F``;
* branch: ``train --granularity branch`` (per attention / MLP branch), ``prune --keep-flops F'`` where F' is
  the FLOPs ratio the block plan reached (rounded up to 4 decimals), so the branch model is never larger.

Same training (epochs, adaptive schedule, drop rate, seed), same criterion (survival), same healing
(distillation). Then, for seed 0, ``compress report`` on the branch-trained model and both pruned ones
(batch 1, 1 thread, Paddle Inference and ONNX Runtime): latency ratio against FLOPs ratio.
Writes results/branch_bench.json/.md (the CPU recorded) and prints the markdown table.

    python benchmarks/branch_bench.py                       # vit_tiny (from the sample) + tiny_models:TimmViT
    python benchmarks/branch_bench.py --archs vit_tiny --seeds 0 --train-epochs 1 --heal-epochs 1   # smoke
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models: the third-party (timm-style) ViT, an installed-style module

from compress.common.fileio import atomic_path, write_json  # noqa: E402
from compress.measure.latency import machine_info  # noqa: E402
from compress.training.config import FitConfig  # noqa: E402
from compress.workflows.prune import HealConfig, prune  # noqa: E402
from compress.workflows.report import report  # noqa: E402
from compress.workflows.train import train  # noqa: E402

SAMPLE = ROOT / "sample_models/vit_tiny.pdparams"
ARCHS = {"vit_tiny": {"init": SAMPLE, "kwargs": None, "epochs": 3, "lr": 2e-3},
         "tiny_models:TimmViT": {"init": None, "kwargs": {"depth": 6, "embed_dim": 48, "num_heads": 3, "patch": 4},
                                 "epochs": 15, "lr": 4e-3}}


def _train(arch: str, spec: dict, granularity: str, seed: int, epochs: int, out: Path):
    cfg = FitConfig(epochs=epochs, lr=spec["lr"], drop_path_rate=0.2, schedule="adaptive", seed=seed,
                    granularity=granularity)
    if spec["init"] is not None:
        return train(out, init=spec["init"], config=cfg)
    return train(out, arch=arch, arch_kwargs=spec["kwargs"], input_shape=(1, 16, 16), config=cfg)


def _prune(model: Path, keep_flops: float, seed: int, epochs: int, out: Path, criterion: str) -> dict:
    r = prune(model, keep_flops=keep_flops, out=out, criterion=criterion,
              heal=HealConfig(epochs=epochs, patience=epochs, seed=seed))
    return {"keep_flops": keep_flops, "flops_ratio": r.plan.flops_ratio, "removed": r.plan.removed_labels(),
            "surgery_max_abs_diff": r.surgery_check.max_abs_diff, **r.accuracy.to_json()}


def _one(arch, spec, seed, a, tmp: Path, log) -> dict:
    epochs = a.train_epochs if a.train_epochs is not None else spec["epochs"]
    row = {"arch": arch, "seed": seed}
    for g in ("block", "branch"):
        sc = _train(arch, spec, g, seed, epochs, tmp / f"{g}.pdparams")
        row[f"{g}_trained"] = sc.metrics["test_accuracy"]
        log(f"{arch} seed {seed}: trained ({g}) {sc.metrics['test_accuracy']:.4f}")
    row["block"] = _prune(tmp / "block.pdparams", a.keep_flops, seed, a.heal_epochs, tmp / "block_p.pdparams",
                          a.criterion)
    equal = math.ceil(row["block"]["flops_ratio"] * 1e4) / 1e4
    row["branch"] = _prune(tmp / "branch.pdparams", equal, seed, a.heal_epochs, tmp / "branch_p.pdparams",
                           a.criterion)
    log(f"{arch} seed {seed}: block {row['block']}; branch {row['branch']}")
    return row


def _latency(tmp: Path, out_dir: Path) -> list[dict]:
    """The report's latency ratio against the FLOPs ratio (batch 1, 1 thread) for both pruned models."""
    rep = report([tmp / "branch.pdparams", tmp / "branch_p.pdparams", tmp / "block_p.pdparams"], out_dir,
                 threads=1, batch_sizes=(1,), min_runs=100, max_seconds=20.0)
    return [{"model": r["model"], "runtime": r["runtime"], "flops_ratio": r["flops_ratio"],
             "latency_ratio": r["latency_ratio"], "latency_ms_p50": r["latency_ms_p50"]}
            for r in rep["rows"] if r["model"] != "branch"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--keep-flops", type=float, default=0.5)
    ap.add_argument("--train-epochs", type=int, default=None, help="default: 3 from the sample, 15 from scratch")
    ap.add_argument("--heal-epochs", type=int, default=3)
    ap.add_argument("--criterion", default="survival")
    ap.add_argument("--no-latency", action="store_true", help="skip the report (latency) step")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/branch_bench.json"))
    ap.add_argument("--table", action="store_true", help="only print (and write the .md of) the existing --out")
    a = ap.parse_args(argv)
    if a.table:
        return _publish(json.loads(Path(a.out).read_text()), Path(a.out), rewrite=False)
    t0 = time.time()
    log = lambda m: print(f"[{time.time() - t0:.0f} s] {m}", file=sys.stderr, flush=True)  # noqa: E731
    rows, latency = [], {}
    for arch in a.archs.split(","):
        for seed in [int(s) for s in a.seeds.split(",")]:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(_one(arch, ARCHS[arch], seed, a, Path(tmp), log))
                if seed == 0 and not a.no_latency:
                    latency[arch] = _latency(Path(tmp), Path(tmp) / "report")
                    log(f"{arch}: latency {latency[arch]}")
    info = {"keep_flops": a.keep_flops, "heal_epochs": a.heal_epochs, "train_epochs": a.train_epochs,
            "criterion": a.criterion,
            "archs": {k: {**v, "init": str(v["init"]) if v["init"] else None} for k, v in ARCHS.items()},
            "machine": machine_info(1), "seconds": round(time.time() - t0), "rows": rows, "latency": latency}
    _publish(info, Path(a.out))


def _publish(info: dict, out: Path, rewrite: bool = True) -> None:
    """The results as JSON (unless only the table is redone) and as a markdown table next to it; printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if rewrite:
        write_json(out, info)
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(table(info) + "\n")
    print(table(info))


def _ms(xs) -> str:
    xs = [x * 100 for x in xs]
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"


def table(info) -> str:
    m = info["machine"]
    lines = [f"FLOPs budget {info['keep_flops']} (branch: the block plan's ratio), healing {info['heal_epochs']} "
             f"epochs (distillation), criterion {info.get('criterion', 'survival')}, digits test accuracy %, "
             f"mean ± sd over seeds; "
             f"CPU {m['cpu']} (flags {', '.join(m['cpu_flags']) or 'none'}).", "",
             "| arch | granularity | trained | FLOPs ratio | after removal | after healing | branch − block | removed (seed 0) |",
             "|---|---|---|---|---|---|---|---|"]
    for arch in dict.fromkeys(r["arch"] for r in info["rows"]):
        rs = [r for r in info["rows"] if r["arch"] == arch]
        gain = [r["branch"]["after_healing"] - r["block"]["after_healing"] for r in rs]
        for g in ("block", "branch"):
            lines.append(f"| {arch} | {g} | {_ms([r[f'{g}_trained'] for r in rs])} | "
                         f"{statistics.mean(r[g]['flops_ratio'] for r in rs):.3f} | "
                         f"{_ms([r[g]['after_removal'] for r in rs])} | {_ms([r[g]['after_healing'] for r in rs])} | "
                         f"{_ms(gain) if g == 'branch' else ''} | {', '.join(rs[0][g]['removed'])} |")
    if info.get("latency"):
        lines += ["", "| arch | model | runtime | FLOPs ratio | latency ratio | latency / FLOPs |",
                  "|---|---|---|---|---|---|"]
    for arch, recs in (info.get("latency") or {}).items():
        for r in recs:
            lr = r["latency_ratio"]
            lines.append(f"| {arch} | {r['model']} | {r['runtime']} | {r['flops_ratio']:.3f} | "
                         f"{lr:.3f} | {lr / r['flops_ratio']:.2f}x |" if lr else f"| {arch} | {r['model']} | "
                         f"{r['runtime']} | {r['flops_ratio']:.3f} | - | - |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
