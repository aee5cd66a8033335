"""Block discovery over every architecture the repo can build: how many removable units ``compress blocks``
finds, the rejected candidates by reason, and the time per model.

    python benchmarks/zoo_coverage.py [--sources samples,vision,zoo] [--arch SPEC[=N]]... [--arch-kwargs JSON]
                                      [--input-shape 3,224,224] [--path DIR]... [--out benchmarks/results]

Sources: ``samples`` (the shipped architectures at their own input shape), ``vision`` (every factory of
``paddle.vision.models`` at ``--input-shape``), ``zoo`` (``tests/zoo_models.py:ZOO``, the code patterns of
public model zoos, each with the number of removable units read off its code), and every ``--arch`` given
(``module:callable`` or ``file.py:callable``; ``=N`` states the units you counted in its code, compared in
the table), also as a list file (``--arch-file benchmarks/zoo_lists/paddleclas.txt``). ``--path DIR`` puts a model zoo's checkout on ``sys.path`` (e.g. PaddleClas: ``--path
PaddleClas --arch ppcls.arch.backbone.legendary_models.swin_transformer:SwinTransformer_tiny_patch4_window7_224=12``).
Each model is built and probed in its own process (zoos that name their parameters globally cannot build two
models in one process), with ``class_num``/``num_classes`` 10.

Output: one row per model (units found, expected where known, blocks' extra call arguments, rejected
residual-looking candidates by reason, any error, seconds); ``OUT/zoo_coverage.json`` and
``OUT/zoo_coverage.md`` (``--name`` for another name). A model that makes the command fail with anything but a one-line error is a bug.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VISION = ["resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v1",
          "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "shufflenet_v2_x1_0", "squeezenet1_0",
          "densenet121", "googlenet", "inception_v3", "vgg11", "alexnet"]


def one(spec: str, kwargs: dict, shape: tuple) -> dict:
    """Probe one architecture (in this process): the blocks command's result, summarised."""
    import compress
    from compress.common.errors import CompressError

    t0 = time.perf_counter()
    row = {"arch": spec, "input_shape": list(shape)}
    try:
        info = compress.describe_blocks(arch=spec, arch_kwargs=kwargs, input_shape=shape)
    except CompressError as e:
        row.update(error=str(e), seconds=round(time.perf_counter() - t0, 2))
        return row
    except Exception as e:  # noqa: BLE001 - a bug to report, not to hide
        row.update(error=f"INTERNAL {type(e).__name__}: {e}", seconds=round(time.perf_counter() - t0, 2))
        return row
    residual = [r for r in info["rejected"] if r.get("residual")]
    row.update(units=len(info["blocks"]), blocks=[b["path"] for b in info["blocks"]],
               extra_args=sorted({", ".join(b.get("extra_args", [])) for b in info["blocks"]} - {""}),
               wrapped=sum(b["droppath"] == "wrapped" for b in info["blocks"]),
               rejected_residual=dict(Counter(r["kind"] for r in residual)),
               rejected_residual_examples=[f"{r['path']}: {r['reason']}" for r in residual[:3]],
               rejected_by_kind=dict(Counter(r["kind"] for g in info["rejected_groups"] for r in g["rejected"])),
               message=info["message"], params=info["params"], flops=info["flops"],
               seconds=round(time.perf_counter() - t0, 2))
    return row


def _targets(args) -> list[tuple[str, str, dict, tuple, int | None]]:
    """(source, spec, kwargs, input shape, expected units or None)."""
    shape = tuple(int(v) for v in args.input_shape.split(","))
    out = []
    sources = set(args.sources.split(",")) if args.sources else set()
    if "samples" in sources:
        from compress.model.architectures import ARCHITECTURES
        out += [("samples", name, {}, tuple(s), None) for name, (_, s) in ARCHITECTURES.items()]
    if "vision" in sources:
        out += [("vision", f"paddle.vision.models:{f}", {"num_classes": 10}, shape, None) for f in VISION]
    if "zoo" in sources:
        sys.path.insert(0, str(ROOT / "tests"))
        from zoo_models import ZOO
        out += [("zoo", f"zoo_models:{name}", {}, tuple(s), n) for name, (_, s, n) in ZOO.items()]
    kwargs = json.loads(args.arch_kwargs) if args.arch_kwargs else {"class_num": 10}
    listed = [os.path.expandvars(line.strip()) for f in args.arch_file for line in f.read_text().splitlines()
              if line.strip() and not line.lstrip().startswith("#")]   # $ZOO: where a checkout is
    for a in args.arch + listed:
        spec, _, n = a.partition("=")
        out.append(("arch", spec, kwargs, shape, int(n) if n else None))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sources", default="samples,vision,zoo")
    p.add_argument("--arch", action="append", default=[])
    p.add_argument("--arch-file", type=Path, action="append", default=[],
                   help="a file of SPEC[=N] lines (# comments), each as an --arch")
    p.add_argument("--arch-kwargs", default=None, help="for --arch models (default {\"class_num\": 10})")
    p.add_argument("--input-shape", default="3,224,224")
    p.add_argument("--path", action="append", default=[], help="a directory to put on sys.path (a zoo checkout)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--name", default="zoo_coverage", help="results file name (OUT/NAME.json, OUT/NAME.md)")
    p.add_argument("--setup", default=None, help="module:function to call in each worker before building")
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)   # worker: spec kwargs-json shape
    args = p.parse_args()
    for d in args.path:
        sys.path.insert(0, str(Path(d).resolve()))
    if args.one:
        sys.path.insert(0, str(ROOT / "tests"))
        _setup(args.setup)
        print(json.dumps(one(args.one[0], json.loads(args.one[1]), tuple(json.loads(args.one[2])))))
        return 0
    rows = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*map(str, map(Path.resolve, map(Path, args.path))),
                                                        str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    for source, spec, kwargs, shape, expected in _targets(args):
        t0 = time.perf_counter()
        cmd = [sys.executable, __file__, "--one", spec, json.dumps(kwargs), json.dumps(list(shape))]
        r = subprocess.run(cmd + (["--setup", args.setup] if args.setup else []), capture_output=True, text=True,
                           env=env)
        try:
            row = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            row = {"arch": spec, "error": f"CRASH (exit {r.returncode}): {r.stderr.strip()[-300:]}"}
        row.update(source=source, expected=expected, wall_seconds=round(time.perf_counter() - t0, 1))
        rows.append(row)
        print(_line(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(rows, " ".join(sys.argv[1:])))
    known = [r for r in rows if r.get("expected") is not None and "units" in r]
    if known:
        found, want = sum(min(r["units"], r["expected"]) for r in known), sum(r["expected"] for r in known)
        print(f"units found where counted: {found} of {want} ({found / max(want, 1):.1%}); over-counted in "
              f"{sum(r['units'] > r['expected'] for r in known)} models", flush=True)
    bad = [r for r in rows if str(r.get("error", "")).startswith(("INTERNAL", "CRASH"))]
    return 1 if bad else 0


def _setup(spec: str | None) -> None:
    """Call ``module:function`` before building (a zoo whose package logger only its own launcher sets up, e.g.
    PaddleClas' ``ppcls.utils.logger:init_logger``: the benchmark measures block discovery, not that; compress
    itself reports such a factory failing as one error line)."""
    if spec:
        import importlib

        module, _, fn = spec.partition(":")
        getattr(importlib.import_module(module), fn)()


def _line(r: dict) -> str:
    if "units" not in r:
        return f"{r['arch']:80s} error: {r.get('error', '')[:160]}"
    exp = f"/{r['expected']}" if r.get("expected") is not None else ""
    rej = ", ".join(f"{k} {v}" for k, v in r["rejected_residual"].items())
    return f"{r['arch']:80s} {r['units']:4d}{exp:5s} {r['seconds']:6.1f}s {rej}"


def markdown(rows: list[dict], argv: str = "") -> str:
    lines = ["# Block discovery coverage", "",
             f"`python benchmarks/zoo_coverage.py {argv}` on {_cpu()}; units = removable units found by `compress blocks`; "
             "expected = counted by reading the model's code (where stated); residual rejected = residual-looking "
             "layers that are no block, by reason.", "",
             "| source | architecture | input | units | expected | extra call args | residual rejected | s | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        shape = "x".join(map(str, r.get("input_shape", [])))
        if "units" not in r:
            lines.append(f"| {r.get('source')} | `{r['arch']}` | {shape} | - | {r.get('expected') or ''} | | | "
                         f"{r.get('seconds', '')} | error: {r.get('error', '')[:140]} |")
            continue
        rej = ", ".join(f"{k} {v}" for k, v in r["rejected_residual"].items())
        lines.append(f"| {r['source']} | `{r['arch']}` | {shape} | {r['units']} | "
                     f"{'' if r.get('expected') is None else r['expected']} | {'; '.join(r['extra_args'])} | {rej} | "
                     f"{r['seconds']} | {(r.get('message') or '')[:120]} |")
    return "\n".join(lines) + "\n"


def _cpu() -> str:
    try:
        name = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        name = "unknown CPU"
    return f"{name}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"


if __name__ == "__main__":
    sys.exit(main())
