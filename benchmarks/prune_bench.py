"""Benchmark: every criterion on the shipped sample models, keep 0.75 and 0.5, several seeds,
the same healing budget. Prints a markdown table and writes results/prune_bench.json.

    python benchmarks/prune_bench.py                      # both samples, 3 seeds, 3 healing epochs
    python benchmarks/prune_bench.py --models sample_models/vit_tiny.pdparams --seeds 0
    python benchmarks/prune_bench.py --criteria survival --keeps 0.5,0.33 --distill-targets logits,hidden
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from compress.pruning.criteria import CRITERIA
from compress.workflows.prune import HealConfig, prune

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="+", default=[str(ROOT / "sample_models/resnet_tiny.pdparams"),
                                                    str(ROOT / "sample_models/vit_tiny.pdparams")])
    ap.add_argument("--keeps", default="0.75,0.5")
    ap.add_argument("--criteria", default=",".join(CRITERIA))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=3, help="healing epochs (same budget for every criterion)")
    ap.add_argument("--distill-targets", default="logits", help="what healing distils: logits, hidden (comma list)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/prune_bench.json"))
    a = ap.parse_args(argv)
    keeps = [float(k) for k in a.keeps.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    targets = a.distill_targets.split(",")
    rows = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for model in a.models:
            for keep in keeps:
                for crit, target, seed in itertools.product(a.criteria.split(","), targets, seeds):
                    heal = HealConfig(epochs=a.epochs, patience=a.epochs, seed=seed, distill_target=target)
                    r = prune(model, keep=keep, criterion=crit, out=Path(tmp) / "p.pdparams", heal=heal)
                    rows.append({"model": Path(model).stem, "keep": keep, "criterion": crit, "seed": seed,
                                 "distill_target": target, "removed": r.plan.remove, **r.accuracy.to_json()})
                    print(f"{Path(model).stem} keep {keep} {crit} {target} seed {seed}: {r.accuracy.to_json()} "
                          f"[{time.time() - t0:.0f} s]", file=sys.stderr, flush=True)
                    save(a.out, a.epochs, seeds, rows)  # after every run: an interrupted benchmark keeps its rows
    print(table(rows, a.epochs, seeds))


def save(out, epochs, seeds, rows) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"epochs": epochs, "seeds": seeds, "rows": rows}, indent=1))


def table(rows, epochs, seeds) -> str:
    out = [f"Healing: {epochs} epochs, distillation on; mean over seeds {seeds} (test accuracy, %; "
           "Δ = healed - original, points).", "",
           "| model | keep | criterion | distils | removed | after removal | after healing (per seed) | Δ |",
           "|---|---|---|---|---|---|---|---|"]
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["keep"], r["criterion"], r.get("distill_target", "logits")), []).append(r)
    for (model, keep, crit, target), rs in groups.items():
        rem = statistics.mean(r["after_removal"] for r in rs) * 100
        heal = statistics.mean(r["after_healing"] for r in rs) * 100
        orig = rs[0]["original"] * 100
        picks = {tuple(r["removed"]) if r.get("removed") is not None else None for r in rs}
        removed = "-" if picks == {None} else ",".join(map(str, rs[0]["removed"])) if len(picks) == 1 else "varies"
        per_seed = " / ".join(f"{r['after_healing'] * 100:.2f}" for r in rs)
        out.append(f"| {model} | {keep} | {crit} | {target} | {removed} | {rem:.2f} | {heal:.2f} ({per_seed}) "
                   f"| {heal - orig:+.2f} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
