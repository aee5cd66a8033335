"""Benchmark: does the free importance rank units as removing them does? For each setting, train a model (the
library's ``train``), then run the true ablation on the test split (``compress ablate``: every unit alone switched
off, no healing) and record each criterion's Spearman and Kendall rank correlation with the true loss increase.

    python benchmarks/importance_fidelity.py [--archs resnet_tiny,vit_tiny] [--data digits] [--seeds 0,1,2]
        [--settings uniform0.1,uniform0.2,linear0.2,adaptive0.2] [--epochs 12] [--granularity block]
        [--arch-kwargs JSON] [--input-shape C,H,W] [--work DIR] [--out benchmarks/results/importance_fidelity]

A setting is SCHEDULE+RATE (``adaptive0.2``: the adaptive schedule at mean rate 0.2, no target). ``--archs`` takes
the shipped names or ``module:callable`` (e.g. ``benchmarks/third_party.py:TimmViT``). Every run is saved to
``OUT.json`` as it finishes (a rerun resumes, skipping what is done); ``OUT.md`` has, per (arch, setting), the
mean and the spread (min-max over seeds) of each criterion's Spearman, and how many units' true loss increase
is within 2 standard errors of zero (their order is noise). Extra forward passes per criterion: importance,
survival and the residual ratio 0 (recorded while training); block influence and angular distance one pass over
<= 256 validation images; the true ablation N + 1 passes over the test split.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compress.common.fileio import write_json  # noqa: E402
from compress.measure.latency import machine_info  # noqa: E402
from compress.training.config import FitConfig  # noqa: E402
from compress.model.trust import remember_if_needed  # noqa: E402
from compress.workflows.ablate import ablate  # noqa: E402
from compress.workflows.train import train  # noqa: E402

CRITERIA = ("importance", "residual", "block-influence", "angular", "survival")


def parse_setting(text: str) -> tuple[str, float]:
    m = re.fullmatch(r"(uniform|linear|adaptive)([0-9.]+)", text)
    if not m:
        raise SystemExit(f"bad setting {text!r}: SCHEDULE+RATE, e.g. uniform0.2")
    return m.group(1), float(m.group(2))


def run_one(arch: str, setting: str, seed: int, a) -> dict:
    schedule, rate = parse_setting(setting)
    name = f"{arch.replace(':', '_').replace('/', '_')}.{setting}.{a.granularity}.e{a.epochs}.s{seed}"
    path = a.work / f"{name}.pdparams"
    t0 = time.perf_counter()
    if not path.exists():
        cfg = FitConfig(epochs=a.epochs, seed=seed, drop_path_rate=rate, schedule=schedule,
                        granularity=a.granularity)
        train(path, arch=arch, arch_kwargs=json.loads(a.arch_kwargs) if a.arch_kwargs else None, data=a.data,
              input_shape=tuple(int(v) for v in a.input_shape.split(",")) if a.input_shape else None, config=cfg)
    train_s = time.perf_counter() - t0
    res = ablate(path, split="test")
    return {"arch": arch, "setting": setting, "seed": seed, "granularity": a.granularity, "epochs": a.epochs,
            "data": a.data, "train_seconds": round(train_s, 1), "ablation": res.to_json()}


def spearman_of(run: dict, criterion: str):
    f = next((f for f in run["ablation"]["fidelity"] if f["criterion"] == criterion), None)
    return None if f is None else f["spearman"]


def markdown(runs: list[dict], info: dict) -> str:
    lines = ["# Importance fidelity: each criterion's ranking against the true single-unit ablation", "",
             f"{info.get('cpu', '')}; Spearman rank correlation with the true test-loss increase of switching each "
             "unit off alone (no healing): mean [min, max] over seeds. `noise` = units whose true increase is within "
             "2 standard errors of 0 (mean over seeds) out of all units.", "",
             "| arch | data | setting | gran. | epochs | seeds | test images | base acc | "
             + " | ".join(CRITERIA) + " | noise |",
             "|---|---|---|---|---|---|---|---|" + "---|" * len(CRITERIA) + "---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["arch"], r["data"], r["setting"], r["granularity"], r["epochs"]), []).append(r)
    for (arch, data, setting, gran, epochs), rs in groups.items():
        cells = []
        for c in CRITERIA:
            vals = [v for v in (spearman_of(r, c) for r in rs) if v is not None]
            cells.append(f"{statistics.mean(vals):.3f} [{min(vals):.2f}, {max(vals):.2f}]" if vals else "-")
        noise = statistics.mean(sum(abs(u["loss_increase"]) < 2 * (u["loss_increase_stderr"] or 0)
                                    for u in r["ablation"]["units"]) for r in rs)
        units = len(rs[0]["ablation"]["units"])
        acc = statistics.mean(r["ablation"]["base"]["accuracy"] for r in rs) * 100
        lines.append(f"| {arch} | {data} | {setting} | {gran} | {epochs} | {len(rs)} | "
                     f"{rs[0]['ablation']['base']['images']} | {acc:.1f} % | " + " | ".join(cells)
                     + f" | {noise:.1f}/{units} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", default="resnet_tiny,vit_tiny")
    p.add_argument("--data", default="digits")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--settings", default="uniform0.1,uniform0.2,linear0.2,adaptive0.2")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--granularity", default="block")
    p.add_argument("--arch-kwargs", default=None)
    p.add_argument("--input-shape", default=None)
    p.add_argument("--work", type=Path, default=Path("/tmp/compress-fidelity"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "importance_fidelity")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    out_json = a.out.with_suffix(".json")
    saved = json.loads(out_json.read_text()) if out_json.exists() else {"runs": []}
    done = {(r["arch"], r["setting"], r["seed"], r["granularity"], r["epochs"], r["data"]) for r in saved["runs"]}
    for arch in a.archs.split(","):
        if ":" in arch:
            remember_if_needed(arch)
        for setting in a.settings.split(","):
            for seed in (int(s) for s in a.seeds.split(",")):
                if (arch, setting, seed, a.granularity, a.epochs, a.data) in done:
                    continue
                run = run_one(arch, setting, seed, a)
                saved["runs"].append(run)
                saved["machine"] = machine_info()
                write_json(out_json, saved)
                print(arch, setting, seed, {c: spearman_of(run, c) for c in CRITERIA}, flush=True)
    a.out.with_suffix(".md").write_text(markdown(saved["runs"], saved.get("machine", {})))
    print(a.out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
