"""Zoo models through the whole pipeline at their real size: for each ``--arch``, ``compress train`` (a short
fine-tune under DropPath), ``compress prune --keep 0.5`` with healing, and ``compress export --format paddle,onnx``
(every file verified against the dygraph model), each a fresh ``compress`` process (zoos that name their
parameters globally build one model per process), on a small built-in data set at 224x224.

    python benchmarks/zoo_pipeline.py --arch SPEC [--arch SPEC]... [--arch-file FILE] [--path DIR]
        [--setup module:function] [--arch-kwargs '{"class_num": 10}'] [--data shapes:120] [--epochs 1]
        [--work DIR] [--out benchmarks/results/zoo_pipeline]

Records per model: blocks found, blocks removed, the surgery self-check's figure, accuracies (few images: a
smoke test of the path, not an accuracy result), each runtime's parity (max abs diff, argmax agreement), and
the wall time of each command. ``OUT.json`` and ``OUT.md``.
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


def _compress(args: list, env: dict, setup: str | None) -> tuple[dict | None, str, float]:
    """Run one ``compress`` command with ``--json``; (its JSON, its last stderr line, seconds)."""
    pre = (f"import importlib; m, f = {setup!r}.split(':'); getattr(importlib.import_module(m), f)(); "
           if setup else "")
    code = pre + "import sys; from compress_cli.app import run; sys.argv = ['compress'] + sys.argv[1:]; run()"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, *map(str, args), "--json"], capture_output=True, text=True,
                       env=env)
    tail = (r.stderr.strip().splitlines() or [""])[-1]
    try:
        return json.loads(r.stdout), tail, time.perf_counter() - t0
    except json.JSONDecodeError:
        return None, tail or f"exit {r.returncode}", time.perf_counter() - t0


def one(spec: str, a, env: dict) -> dict:
    name = spec.rsplit(":", 1)[-1]
    base, pruned, exp = a.work / f"{name}.pdparams", a.work / f"{name}.keep0.5.pdparams", a.work / f"{name}.exp"
    row = {"arch": spec}
    t, err, s = _compress(["train", "--arch", spec, "--arch-kwargs", a.arch_kwargs, "--input-shape", "3,224,224",
                           "--data", a.data, "--epochs", a.epochs, "--drop-path-rate", 0.1, "--batch-size", 16,
                           "--out", base], env, a.setup)
    row["train_s"] = round(s, 1)
    if t is None:
        return {**row, "error": f"train: {err}"}
    row.update(blocks=t.get("blocks"), accuracy_trained=t.get("test_accuracy", t.get("accuracy")))
    p, err, s = _compress(["prune", base, "--keep", 0.5, "--epochs", a.epochs, "--batch-size", 16, "--out", pruned],
                          env, a.setup)
    row["prune_s"] = round(s, 1)
    if p is None:
        return {**row, "error": f"prune: {err}"}
    row.update(removed=p["plan"]["remove_paths"], surgery_check=p["surgery_check"]["max_abs_diff"],
               accuracy=p["accuracy"])
    e, err, s = _compress(["export", pruned, "--out", exp, "--format", "paddle,onnx"], env, a.setup)
    row["export_s"] = round(s, 1)
    if e is None:
        return {**row, "error": f"export: {err}"}
    row["parity"] = {k: {"max_abs_diff": v["max_abs_diff"], "argmax": v["argmax_agreement"], "passed": v["passed"]}
                     for k, v in e["parity"]["runtimes"].items()}
    return row


def markdown(rows: list[dict], argv: str) -> str:
    lines = ["# Zoo models through train, prune (keep 0.5, healing) and export at 224x224", "",
             f"`python benchmarks/zoo_pipeline.py {argv}`", "",
             "| model | blocks | removed | self-check | parity (max abs diff, argmax) | train s | prune s | export s | "
             "note |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        par = "; ".join(f"{k} {v['max_abs_diff']:.1e}, {v['argmax'] * 100:.0f}%" for k, v in r.get("parity", {}).items())
        lines.append(f"| `{r['arch'].rsplit(':', 1)[-1]}` | {r.get('blocks', '')} | {len(r.get('removed', []))} | "
                     f"{r.get('surgery_check', '')} | {par} | {r.get('train_s', '')} | {r.get('prune_s', '')} | "
                     f"{r.get('export_s', '')} | {r.get('error', '')[:160]} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", action="append", default=[])
    p.add_argument("--arch-file", type=Path, default=None)
    p.add_argument("--arch-kwargs", default='{"class_num": 10}')
    p.add_argument("--path", action="append", default=[])
    p.add_argument("--setup", default=None)
    p.add_argument("--data", default="shapes:120")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--work", type=Path, default=Path("/tmp/compress-zoo-pipeline"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "zoo_pipeline")
    a = p.parse_args()
    specs = list(a.arch)
    if a.arch_file:
        specs += [os.path.expandvars(l.strip()).split("=")[0] for l in a.arch_file.read_text().splitlines()
                  if l.strip() and not l.lstrip().startswith("#")]
    a.work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*(str(Path(d).resolve()) for d in a.path),
                                                        os.environ.get("PYTHONPATH", "")]),
               COMPRESS_TRUST_ARCH="1")
    rows = []
    for spec in specs:
        rows.append(one(spec, a, env))
        print(json.dumps(rows[-1]), flush=True)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
        a.out.with_suffix(".md").write_text(markdown(rows, " ".join(sys.argv[1:])))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
