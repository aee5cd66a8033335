"""Benchmark: `prune --keep K` against `prune --keep-flops F` at the same FLOPs ratio (F = the ratio
--keep K reaches, rounded up to 4 decimals) and at a budget just below it (rounded down), same
criterion, same healing, several seeds. Prints a markdown table and writes
results/budget_bench_<model>.json/.md (the CPU recorded).

    python benchmarks/budget_bench.py                                   # resnet_tiny, keep 0.5, seeds 0,1
    python benchmarks/budget_bench.py --model sample_models/vit_tiny.pdparams --criteria survival --seeds 0
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

from compress.measure.latency import machine_info
from compress.workflows.prune import HealConfig, plan, prune
from compress.model.bundle import load_model

ROOT = Path(__file__).resolve().parent.parent


def _run(model, seed, epochs, tmp, **target) -> dict:
    heal = HealConfig(epochs=epochs, patience=epochs, seed=seed)
    r = prune(model, out=Path(tmp) / "p.pdparams", heal=heal, **target)
    return {"removed": r.plan.remove_paths, "flops_ratio": r.plan.flops_ratio,
            "surgery_max_abs_diff": r.surgery_check.max_abs_diff, **r.accuracy.to_json()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(ROOT / "sample_models/resnet_tiny.pdparams"))
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--criteria", default="survival")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=3, help="healing epochs (the same for both)")
    ap.add_argument("--out", default=None, help="default: benchmarks/results/budget_bench_<model>.json")
    a = ap.parse_args(argv)
    name = Path(a.model).stem
    out = Path(a.out or ROOT / f"benchmarks/results/budget_bench_{name}.json")
    seeds = [int(s) for s in a.seeds.split(",")]
    rows, t0 = [], time.time()
    bundle = load_model(a.model)
    with tempfile.TemporaryDirectory() as tmp:
        for crit in a.criteria.split(","):
            ratio = plan(bundle, keep=a.keep, criterion=crit).flops_ratio  # what --keep K reaches
            equal, tighter = math.ceil(ratio * 1e4) / 1e4, math.floor(ratio * 1e4) / 1e4
            for seed in seeds:
                for how, target in ((f"--keep {a.keep:g}", {"keep": a.keep}),
                                    (f"--keep-flops {equal:.4f}", {"keep_flops": equal}),
                                    (f"--keep-flops {tighter:.4f}", {"keep_flops": tighter})):
                    r = _run(a.model, seed, a.epochs, tmp, criterion=crit, **target)
                    rows.append({"criterion": crit, "how": how, "seed": seed, **r})
                    print(f"{crit} {how} seed {seed}: {r} [{time.time() - t0:.0f} s]", file=sys.stderr, flush=True)
    info = {"model": name, "keep": a.keep, "epochs": a.epochs, "seeds": seeds, "machine": machine_info(1),
            "seconds": round(time.time() - t0), "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=1))
    text = table(info)
    out.with_suffix(".md").write_text(text + "\n")
    print(text)


def table(info) -> str:
    m = info["machine"]
    lines = [f"{info['model']}: healing {info['epochs']} epochs (distillation), mean over seeds {info['seeds']}; "
             f"test accuracy %, digits; CPU {m['cpu']} (flags {', '.join(m['cpu_flags']) or 'none'}).", "",
             "| criterion | target | FLOPs ratio | removed | after removal | after healing | surgery check |",
             "|---|---|---|---|---|---|---|"]
    groups = {}
    for r in info["rows"]:
        groups.setdefault((r["criterion"], r["how"]), []).append(r)
    for (crit, how), rs in groups.items():
        mean = lambda k: statistics.mean(x[k] for x in rs) * 100  # noqa: E731
        removed = sorted({", ".join(x["removed"]) for x in rs})
        lines.append(f"| {crit} | `{how}` | {rs[0]['flops_ratio']:.3f} | {' / '.join(removed)} | "
                     f"{mean('after_removal'):.2f} | {mean('after_healing'):.2f} | "
                     f"{max(x['surgery_max_abs_diff'] for x in rs):.2g} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
