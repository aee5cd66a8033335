"""Real architectures at real size (224x224, random weights) through the library, as a new user would
take them: ``train --epochs 0``, ``prune --keep 0.5 --criterion every-other --epochs 0``, ``export``
(every format, with INT8) and ``report``.

    python benchmarks/real_size.py [--models deit_tiny,resnet50,mobilenet_v2] [--out benchmarks/results]
                                   [--work DIR] [--runs 100] [--seconds 60] [--int8-seconds 8]

Models: a DeiT-tiny-sized ViT written here (embed 192, 12 blocks, 3 heads, patch 16, timm-style own
DropPath; or any ``--arch NAME=module:callable``), ``paddle.vision.models`` ResNet-50 and MobileNetV2
(10 classes, for the built-in digits data resized to 224x224). Keep 0.5: every other removable block (for
MobileNetV2, half of its 10 stride-1 inverted residuals).

Measured per model: FLOPs ratio; latency ratio (pruned / original p50) on Paddle Inference and ONNX
Runtime (batch 1, 1 thread, the models alternating; by ``compress report``); every INT8 candidate's
speed-up over FP32 on each runtime (from export.json: measured by the export, 1 thread, batch 1,
alternating); export wall time and the peak memory (max RSS of the export process and its children),
each export in a fresh process. Targets (issue 14): latency ratio <= 1.1x the FLOPs ratio on both
runtimes; best ONNX Runtime INT8 >= 1.5x FP32 for the ViT and ResNet-50; export <= 60 s per model.

Latency figures mean something only on a quiet machine: note the load average the script records.
Results: ``OUT/real_size.json`` and ``OUT/real_size.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import paddle
import paddle.nn as nn

from compress.model.architectures import DropPath  # timm-style: a layer class named DropPath (the block owns it)

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("paddle", "paddle-legacy", "onnx")
TARGET_EXPORT_SECONDS = 60.0


# --------------------------------------------------------------------------- a DeiT-tiny-sized ViT
class Attention(nn.Layer):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape([b, n, 3, self.heads, c // self.heads]).transpose([2, 0, 3, 1, 4])
        attn = nn.functional.softmax(paddle.matmul(qkv[0], qkv[1], transpose_y=True) * self.scale, axis=-1)
        return self.proj(paddle.matmul(attn, qkv[2]).transpose([0, 2, 1, 3]).reshape([b, n, c]))


class Block(nn.Layer):
    def __init__(self, dim, heads, mlp_ratio, dp):
        super().__init__()
        self.norm1, self.attn, self.drop_path = nn.LayerNorm(dim), Attention(dim, heads), DropPath(dp)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class DeiT(nn.Layer):
    """DeiT-tiny shape: patch 16, embed 192, 12 blocks, 3 heads, MLP ratio 4, class token."""

    def __init__(self, num_classes=10, in_chans=3, img_size=224, patch=16, dim=192, depth=12, heads=3, mlp_ratio=4,
                 drop_path=0.1):
        super().__init__()
        self.patch_embed = nn.Conv2D(in_chans, dim, patch, stride=patch)
        n = (img_size // patch) ** 2
        self.cls_token = self.create_parameter([1, 1, dim], default_initializer=nn.initializer.Constant(0.0))
        self.pos_embed = self.create_parameter([1, n + 1, dim], default_initializer=nn.initializer.Normal(std=0.02))
        self.blocks = nn.LayerList([Block(dim, heads, mlp_ratio, drop_path * i / max(depth - 1, 1))
                                    for i in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose([0, 2, 1])
        x = paddle.concat([self.cls_token.expand([x.shape[0], -1, -1]), x], axis=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


def deit_tiny(**kw):
    return DeiT(**kw)


ARCHS = {"deit_tiny": f"{Path(__file__).resolve()}:deit_tiny",
         "resnet50": "paddle.vision.models:resnet50",
         "mobilenet_v2": "paddle.vision.models:mobilenet_v2"}


# --------------------------------------------------------------------------- steps
def export_options(int8_seconds: float):
    from compress.export import ExportOptions

    return ExportOptions(formats=FORMATS, int8="auto", int8_seconds=int8_seconds)


def export_in_child(model: Path, out: Path, int8_seconds: float) -> dict:
    """One export in a fresh process: wall seconds and peak memory (max RSS of it and its children)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--export-one", str(model), str(out), str(int8_seconds)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"export of {model} failed:\n{proc.stderr[-3000:]}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall_seconds": round(wall, 1), **child}


def _own_peak_kb() -> int:
    """This process's peak RSS (VmHWM). Not ru_maxrss: after fork+exec that starts at the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def export_one(model: str, out: str, int8_seconds: float) -> None:
    """(in the child) export, then print its own figures as one JSON line. Peak memory: the largest RSS of
    the export process and of its own subprocesses (theirs may start at this process's RSS when forked)."""
    from compress.export import export_model

    t0 = time.perf_counter()
    info = export_model(model, out, export_options(int8_seconds), force=True)
    peak = max(_own_peak_kb(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"export_seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(peak / 1024),
                      "steps": info["seconds"]}))


def make_models(name: str, spec: str, work: Path) -> tuple[Path, Path]:
    """The random-weight original (train --epochs 0) and its keep-0.5 every-other child (no healing)."""
    from compress.training.config import FitConfig
    from compress.workflows.prune import HealConfig, prune
    from compress.workflows.train import train

    orig = work / f"{name}.pdparams"
    child = work / f"{name}.keep0.5.pdparams"
    if not orig.is_file():
        train(orig, arch=spec, arch_kwargs={"num_classes": 10}, data="digits", input_shape=(3, 224, 224),
              config=FitConfig(epochs=0, drop_path_rate=0.0))
    if not child.is_file():
        prune(orig, keep=0.5, criterion="every-other", out=child, heal=HealConfig(epochs=0))
    return orig, child


def int8_speedups(info: dict) -> dict:
    """{runtime: {scheme: speed-up}, ...} and what was kept, from one export.json."""
    out = {}
    for rt in ("onnxruntime", "paddle"):
        r = (info.get("int8") or {}).get(rt) or {}
        out[rt] = {"fp32_ms": (r.get("fp32") or {}).get("latency_ms_p50"), "chosen": r.get("chosen"),
                   "schemes": {c["scheme"]: c["speedup"] for c in r.get("candidates", [])},
                   "skipped": r.get("skipped")}
    return out


def bench_model(name: str, spec: str, a, work: Path) -> dict:
    from compress.model.bundle import resolve_arch
    from compress.model.sidecar import read_sidecar
    from compress.workflows.report import report

    resolve_arch(spec)  # named here, so trusted (and remembered, with this file's current hash) for the sidecars
    t0 = time.perf_counter()
    orig, child = make_models(name, spec, work)
    print(f"[{name}] models ready in {time.perf_counter() - t0:.0f} s", flush=True)
    rep_dir = work / f"report_{name}"
    exports = {}
    for m in (orig, child):  # exported where the report looks, with the report's options: the report reuses them
        exports[m.stem] = export_in_child(m, rep_dir / "exports" / m.stem, a.int8_seconds)
        print(f"[{name}] exported {m.stem}: {exports[m.stem]}", flush=True)
    rep = report([orig, child], rep_dir, batch_sizes=(1,), threads=1, min_runs=a.runs, max_seconds=a.seconds,
                 export=export_options(a.int8_seconds))
    sc_o, sc_c = read_sidecar(orig), read_sidecar(child)
    rows = {(r["model"], r["runtime"]): r for r in rep["rows"]}
    lat = {rt: rows[(child.stem, rt)]["latency_ratio"] for rt in ("paddle", "onnxruntime")}
    info = json.loads((rep_dir / "exports" / orig.stem / "export.json").read_text())
    return {"model": name, "arch": spec, "blocks": len(sc_o.blocks), "blocks_kept": len(sc_c.blocks),
            "removed": sc_c.lineage[-1]["removed"], "flops": sc_o.flops, "flops_kept": sc_c.flops,
            "flops_ratio": sc_c.flops / sc_o.flops, "latency_ratio": lat,
            "p50_ms": {f"{m}/{rt}": r["latency_ms_p50"] for (m, rt), r in rows.items()},
            "int8": int8_speedups(info), "export": exports, "headline": rep["headline"],
            "report": str(rep_dir / "report.md"), "parity": {k: v["worst_tolerance_use"]
                                                             for k, v in info["parity"]["runtimes"].items()}}


# --------------------------------------------------------------------------- output
def verdicts(r: dict) -> dict:
    fr = r["flops_ratio"]
    ort = r["int8"]["onnxruntime"]["schemes"]
    best_ort = max((v for v in ort.values() if v), default=None)
    return {"latency_paddle": r["latency_ratio"]["paddle"] <= 1.1 * fr,
            "latency_onnxruntime": r["latency_ratio"]["onnxruntime"] <= 1.1 * fr,
            "int8_onnxruntime_1.5x": None if r["model"] == "mobilenet_v2" else bool(best_ort and best_ort >= 1.5),
            "export_60s": all(e["wall_seconds"] <= TARGET_EXPORT_SECONDS for e in r["export"].values())}


def _yes(v) -> str:
    return "-" if v is None else ("**met**" if v else "**missed**")


def markdown(results: list[dict], machine: dict, load: list) -> str:
    lines = [f"Machine: {machine['cpu']}, {machine['usable_cores']} usable cores, flags "
             f"{' '.join(machine['cpu_flags'])}; load average before/after: {load[0]} / {load[1]}.", "",
             "| model | blocks kept | FLOPs ratio | latency ratio PI / ORT (limit 1.1x FLOPs) | INT8 speed-up ONNX Runtime "
             "| INT8 speed-up Paddle Inference | export s (original / keep 0.5) | peak MB | targets |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        v = verdicts(r)
        fmt_int8 = lambda rt: ", ".join(f"{k} {s:.2f}x" if s else f"{k} -" for k, s in r["int8"][rt]["schemes"].items()) \
            + (f" (kept {r['int8'][rt]['chosen']})" if r["int8"][rt]["chosen"] else " (none kept)")  # noqa: E731
        ex = list(r["export"].values())
        lines.append(
            f"| {r['model']} | {r['blocks_kept']}/{r['blocks']} | {r['flops_ratio']:.3f} | "
            f"{r['latency_ratio']['paddle']:.3f} / {r['latency_ratio']['onnxruntime']:.3f} "
            f"(limit {1.1 * r['flops_ratio']:.3f}) | {fmt_int8('onnxruntime')} | {fmt_int8('paddle')} | "
            f"{ex[0]['wall_seconds']:.0f} / {ex[1]['wall_seconds']:.0f} | {max(e['peak_rss_mb'] for e in ex)} | "
            f"latency PI {_yes(v['latency_paddle'])}, ORT {_yes(v['latency_onnxruntime'])}; INT8 1.5x "
            f"{_yes(v['int8_onnxruntime_1.5x'])}; export 60 s {_yes(v['export_60s'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(ARCHS))
    ap.add_argument("--arch", action="append", default=[], help="NAME=module:callable, another model to run")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--work", default=str(ROOT / ".bench_real_size"))
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--int8-seconds", type=float, default=8.0)
    a = ap.parse_args(argv)
    from compress.measure.latency import machine_info

    archs = dict(ARCHS, **dict(x.split("=", 1) for x in a.arch))
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    load = [os.getloadavg()[0]]
    results = [bench_model(n, archs[n], a, work) for n in a.models.split(",") + [x.split("=")[0] for x in a.arch]]
    load.append(os.getloadavg()[0])
    machine = machine_info(threads=1)
    for r in results:
        r["targets"] = verdicts(r)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "real_size.json").write_text(json.dumps({"machine": machine, "load_average": load, "results": results},
                                                   indent=1, default=str) + "\n")
    md = markdown(results, machine, [round(x, 2) for x in load])
    (out / "real_size.md").write_text(md)
    print(md)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--export-one":
        export_one(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        main()
