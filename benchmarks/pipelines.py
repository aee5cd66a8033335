"""Benchmark: whole pipelines (training + block removal + healing) side by side, on the same
architecture, the same data and the same total epochs (training + healing), run in-process
through the library (compress.workflows.train / prune). Each base model is trained ONCE per
(arch, data, seed, training kind) and reused for every keep ratio and criterion.

Training kinds: `plain` (no DropPath), `linear` (linear DropPath 0.1, the LayerDrop recipe's),
`default@K` (compress's adaptive schedule with `--target-keep K`, rate --default-rate,
`--max-rate` 0.7). Pipelines (criterion on a trained model, then healing with distillation):

  plain+best      the best of the baseline criteria (every-other, last, block-influence, angular) on the
                  plain model, per cell (mean over seeds), named
  LayerDrop       linear + every-other
  ShortGPT plain  plain + block-influence;  ShortGPT linear: linear + block-influence
  last-k          plain + last
  linear+survival linear + survival (what `train` and `prune` do with no options)
  default         default@K + survival (the default criterion)

Results go to a JSON (every run as it finishes; a rerun with the same --out resumes the grid and
skips what is done) and a markdown table next to it.

    python benchmarks/pipelines.py --archs resnet_tiny --keeps 0.5 --seeds 0 --epochs 12 --heal-epochs 2
    python benchmarks/pipelines.py --table benchmarks/results/pipelines_digits_*.json   # merge + print
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compress.common.errors import CompressError  # noqa: E402
from compress.common.fileio import write_json  # noqa: E402
from compress.measure.latency import machine_info  # noqa: E402
from compress.model.bundle import default_input_shape, load_model  # noqa: E402
from compress.training.config import FitConfig  # noqa: E402
from compress.model.trust import CONFIG_ENV, remember_if_needed  # noqa: E402
from compress.workflows.prune import HealConfig, prune  # noqa: E402
from compress.workflows.train import train  # noqa: E402

BASELINES = ("every-other", "last", "block-influence", "angular")
# pipeline name -> (training kind, criterion); "default" trains per keep ratio
PIPELINES = {"LayerDrop": ("linear", "every-other"), "ShortGPT plain": ("plain", "block-influence"),
             "ShortGPT linear": ("linear", "block-influence"), "last-k": ("plain", "last"),
             "linear+survival": ("linear", "survival"), "default": ("default", "survival")}


def fit_config(kind: str, keep: float, a) -> FitConfig:
    common = {"epochs": a.epochs, "seed": a.seed_now}
    if kind == "plain":
        return FitConfig(drop_path_rate=0.0, **common)
    if kind == "linear":
        return FitConfig(drop_path_rate=0.1, schedule="linear", **common)
    if kind == "default":
        return FitConfig(drop_path_rate=a.default_rate, schedule="adaptive", target_keep=keep, **common)
    if kind == "variant":  # the one variant tried against the targets (see --variant)
        return FitConfig(drop_path_rate=a.default_rate, schedule="adaptive", target_keep=keep, **common,
                         **json.loads(a.variant))
    raise ValueError(kind)


class Grid:
    """The results file: every finished run under its key, written after each one (resumable)."""

    def __init__(self, path: Path, config: dict):
        self.path = path
        old = json.loads(path.read_text()) if path.exists() else {}
        for k in ("epochs", "heal_epochs", "default_rate", "data", "input_shape", "arch_kwargs", "variant"):
            if old and old["config"].get(k) != config[k]:
                sys.exit(f"error: {path} was made with {k}={old['config'].get(k)!r}, not {config[k]!r}: "
                         "give another --out")
        self.data = {"config": config, "machine": machine_info(1), "seconds": old.get("seconds", 0),
                     "trained": old.get("trained", {}), "runs": old.get("runs", {})}
        self.t0 = time.time() - self.data["seconds"]

    def save(self):
        self.data["seconds"] = round(time.time() - self.t0)
        write_json(self.path, self.data)


def model_file(work: Path, key: str, variant: str | None = None) -> Path:
    """Where the base model of ``key`` is kept; a variant's name carries a hash of its options, so two
    variants never share (or reuse) one trained file."""
    name = key.replace('|', '_').replace('/', '_').replace(':', '_')
    if variant:
        name += "_" + hashlib.sha1(variant.encode()).hexdigest()[:8]
    return work / f"{name}.pdparams"


def trained(grid: Grid, a, arch: str, kind: str, keep: float, work: Path) -> str:
    """The base model of this (arch, data, seed, kind[, keep]), trained once (resumed if interrupted)."""
    tag = kind if kind in ("plain", "linear") else f"{kind}@{keep:g}"
    key = f"{arch}|{a.data}|{a.seed_now}|{tag}"
    out = model_file(work, key, a.variant if kind == "variant" else None)
    if key in grid.data["trained"] and out.exists():
        return str(out)
    if out.exists():  # trained for another results file (e.g. the variant's) with the same settings: reuse it
        sc = load_model(out).sidecar
        if sc.training["epochs"] == a.epochs and sc.training["seed"] == a.seed_now:
            grid.data["trained"][key] = {"test_accuracy": sc.metrics["test_accuracy"],
                                         "seconds": sc.training["seconds"], "schedule": sc.training["schedule"]}
            return str(out)
    t = time.time()
    sc = train(out, arch=arch, arch_kwargs=a.kwargs.get(arch), data=a.data,
               input_shape=a.shape or default_input_shape(arch) or (1, 16, 16),
               config=fit_config(kind, keep, a), resume=None)
    grid.data["trained"][key] = {"test_accuracy": sc.metrics["test_accuracy"], "seconds": round(time.time() - t),
                                 "schedule": sc.training["schedule"]}
    grid.save()
    log(grid, f"trained {key}: test {sc.metrics['test_accuracy'] * 100:.2f} % [{time.time() - t:.0f} s]")
    return str(out)


def healed(grid: Grid, a, model: str, model_key: str, keep: float, criterion: str, work: Path) -> dict:
    """Remove by ``criterion`` at ``keep`` and heal; the same removed set on the same model heals the
    same way (seeded), so it is healed once and shared."""
    key = f"{model_key}|{keep:g}|{criterion}"
    if key in grid.data["runs"]:
        return grid.data["runs"][key]
    heal = HealConfig(epochs=a.heal_epochs, patience=a.heal_epochs, seed=a.seed_now)
    try:
        removed = prune(model, keep=keep, criterion=criterion, heal=heal, dry_run=True).plan.remove
    except CompressError as e:  # e.g. angular: no run of that many contiguous blocks of one shape
        grid.data["runs"][key] = {"skipped": str(e), "criterion": criterion}
        grid.save()
        log(grid, f"{key}: skipped ({e})")
        return grid.data["runs"][key]
    same = next((r for k, r in grid.data["runs"].items()
                 if k.startswith(model_key + f"|{keep:g}|") and r.get("removed") == removed), None)
    if same is None:
        t = time.time()
        r = prune(model, keep=keep, criterion=criterion, out=work / f"pruned-{os.getpid()}.pdparams", heal=heal)
        same = {"removed": r.plan.remove, "flops_ratio": r.plan.flops_ratio, **r.accuracy.to_json(),
                "seconds": round(time.time() - t)}
    grid.data["runs"][key] = dict(same, criterion=criterion)
    grid.save()
    log(grid, f"{key}: removed {removed}, healed {same['after_healing'] * 100:.2f} %")
    return same


def log(grid: Grid, msg: str):
    print(f"[{time.time() - grid.t0:6.0f} s] {msg}", file=sys.stderr, flush=True)


def run_cell(grid: Grid, a, arch: str, keep: float, work: Path):
    """Every pipeline at one (arch, seed, keep)."""
    if a.variant:  # only the variant: its results file is merged with the main one's (--table)
        kinds, pairs = {"variant": None}, [("variant", "survival")]
    else:
        kinds = {"plain": None, "linear": None, "default": None}
        pairs = [("plain", c) for c in BASELINES] + [(k, c) for k, c in PIPELINES.values() if k != "plain"]
    for kind in kinds:
        kinds[kind] = trained(grid, a, arch, kind, keep, work)
    for kind, crit in pairs:
        tag = kind if kind in ("plain", "linear") else f"{kind}@{keep:g}"
        healed(grid, a, kinds[kind], f"{arch}|{a.data}|{a.seed_now}|{tag}", keep, crit, work)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="resnet_tiny,vit_tiny",
                    help="comma-separated: shipped names or module:Class / file.py:Class")
    ap.add_argument("--arch-kwargs", default="{}", help='JSON {"arch": {kwargs}}')
    ap.add_argument("--data", default="digits")
    ap.add_argument("--input-shape", default=None, help="C,H,W (default: the architecture's, else 1,16,16)")
    ap.add_argument("--keeps", default="0.5,0.75,0.33")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=12, help="training epochs")
    ap.add_argument("--heal-epochs", type=int, default=2, help="healing epochs (the same for every pipeline)")
    ap.add_argument("--default-rate", type=float, default=0.2, help="the default pipeline's mean drop rate")
    ap.add_argument("--variant", default=None, help="JSON of extra FitConfig options: run only this extra adaptive pipeline "
                    "(default@K with these options changed), to be merged with the main results by --table")
    ap.add_argument("--order", default="keep", choices=("keep", "seed"),
                    help="keep: every seed at the first keep before the next keep; seed: the other way round")
    ap.add_argument("--work", default="/tmp/compress-pipelines", help="where the trained models are kept")
    ap.add_argument("--out", default=None, help="default: benchmarks/results/pipelines_<data>.json")
    ap.add_argument("--table", nargs="+", default=None, help="only merge these JSON files and print the table")
    a = ap.parse_args(argv)
    if a.table:
        print(table([json.loads(Path(p).read_text()) for p in a.table]))
        return
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(CONFIG_ENV, str(work / "config"))  # trust what we name, in our own list
    a.kwargs = json.loads(a.arch_kwargs)
    a.shape = tuple(int(v) for v in a.input_shape.split(",")) if a.input_shape else None
    archs, keeps, seeds = a.archs.split(","), [float(k) for k in a.keeps.split(",")], [int(s) for s in a.seeds.split(",")]
    for arch in archs:
        if ":" in arch:
            remember_if_needed(arch)
    out = Path(a.out or ROOT / f"benchmarks/results/pipelines_{a.data.split(':')[0]}.json")
    config = {k: v for k, v in vars(a).items() if k not in ("table", "kwargs", "shape", "work", "out")}
    grid = Grid(out, config)
    for arch in archs:
        cells = [(k, s) for k in keeps for s in seeds] if a.order == "keep" else [(k, s) for s in seeds for k in keeps]
        for keep, seed in cells:
            a.seed_now = seed
            run_cell(grid, a, arch, keep, work)
    text = table([grid.data])
    out.with_suffix(".md").write_text(text + "\n")
    print(text)


def _per_seed(runs: dict) -> dict:
    """(arch, data, keep) -> pipeline -> {seed: accuracy after healing, %}; plain+best = the baseline criterion
    with the best mean in that cell (named)."""
    cells: dict = {}
    for key, r in runs.items():
        if "skipped" in r:
            continue
        arch, data, seed, tag, keep, crit = key.split("|")
        kind = tag.split("@")[0]
        cell = cells.setdefault((arch, data, float(keep)), {})
        names = [n for n, kc in PIPELINES.items() if kc == (kind, crit)]
        if kind == "plain":
            names.append(f"plain+{crit}")
        if kind == "variant":
            names.append("variant")
        for n in names:
            cell.setdefault(n, {})[int(seed)] = r["after_healing"] * 100
    for cell in cells.values():
        base = {n: v for n, v in cell.items() if n.startswith("plain+")}
        if base:
            best = max(base, key=lambda n: (len(base[n]), statistics.mean(base[n].values())))
            cell[f"plain+best ({best[6:]})"] = base[best]
            for n in base:
                del cell[n]
    return cells


def _ms(values) -> str:
    v = list(values)
    return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"


def _target(cell: dict, name: str = "default") -> str:
    """keep 0.5: the default (or the variant) against the best other pipeline (mean, and seed by seed)."""
    d = cell.get(name, {})
    others = {n: v for n, v in cell.items() if not n.startswith(("default", "variant")) and set(v) >= set(d)}
    if len(d) < 2 or not others:
        return "not enough seeds"
    mean = {n: statistics.mean(v[s] for s in d) for n, v in others.items()}
    best = max(mean, key=mean.get)
    gap = statistics.mean(d.values()) - mean[best]
    behind = [s for s in sorted(d) if d[s] < others[best][s]]
    ok = gap >= 1.0 and not behind
    return (f"{'**met**' if ok else '**missed**'}: {name} {gap:+.2f} pt vs {best} (mean over seeds {sorted(d)})"
            + (f"; behind on seed(s) {behind}" if behind else "; not behind on any seed"))


def table(datas: list) -> str:
    runs, trained, secs = {}, {}, 0
    for d in datas:
        runs.update(d["runs"])
        trained.update(d["trained"])
        secs += d["seconds"]
    variant = next((d["config"]["variant"] for d in datas if d["config"].get("variant")), None)
    d0 = datas[0]
    m, c = d0["machine"], d0["config"]
    lines = [f"Test accuracy % after healing, mean ± sd over seeds (n = seeds); {c['epochs']} training + "
             f"{c['heal_epochs']} healing epochs (distillation) for every pipeline; the default trains adaptive "
             f"{c['default_rate']} with --target-keep K. CPU {m['cpu']} (flags {', '.join(m['cpu_flags']) or 'none'}); "
             f"wall time {secs / 60:.0f} min (summed over the results files, some run side by side)."
             + (f" `variant`: the default with {variant}." if variant else ""), ""]
    for (arch, data, keep), cell in sorted(_per_seed(runs).items(), key=lambda x: (x[0][0], x[0][1], -x[0][2])):
        lines += [f"**{arch}, {data}, keep {keep:g}**", "", "| pipeline | mean ± sd | n | per seed |", "|---|---|---|---|"]
        for n, v in sorted(cell.items(), key=lambda x: -statistics.mean(x[1].values())):
            per = " / ".join(f"{v[s]:.2f}" for s in sorted(v))
            lines.append(f"| {'**' + n + '**' if n == 'default' else n} | {_ms(v.values())} | {len(v)} | {per} |")
        if keep == 0.5:
            lines += ["", "Target (keep 0.5): " + _target(cell)]
            if "variant" in cell:
                lines += ["", f"Variant ({variant}) against the same target: " + _target(cell, "variant")]
        lines.append("")
    lines += _unpruned(trained)
    return "\n".join(lines)


def _unpruned(trained: dict) -> list:
    groups: dict = {}
    for key, t in trained.items():
        arch, data, seed, tag = key.split("|")
        groups.setdefault((arch, data), {}).setdefault(tag, {})[int(seed)] = t["test_accuracy"] * 100
    lines = ["Unpruned models (test accuracy %, mean ± sd over seeds; target: the default's ≤ 0.5 pt below plain)", "",
             "| arch | data | training | mean ± sd | n | vs plain (pt) |", "|---|---|---|---|---|---|"]
    for (arch, data), tags in sorted(groups.items()):
        plain = tags.get("plain", {})
        for tag, v in sorted(tags.items()):
            common = sorted(set(v) & set(plain))
            delta = (f"{statistics.mean(v[s] - plain[s] for s in common):+.2f}" if common and tag != "plain" else "")
            lines.append(f"| {arch} | {data} | {tag} | {_ms(v.values())} | {len(v)} | {delta} |")
    return lines


if __name__ == "__main__":
    main()
