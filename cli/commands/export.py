"""`compress export`: Paddle Inference and ONNX (optionally INT8), each verified on real test images."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from compress.export import EXPORTERS, FORMATS, MAX_OPSET, MIN_OPSET, ExportOptions, export_model

from ..options import (ATOL, CALIB_DATA, INT8, INT8_FORCE, INT8_SCHEMES, INT8_SECONDS, MAX_ACC_DROP, MIN_ARGMAX,
                       MIN_TOP5, RTOL, export_options)
from ..output import emit_json, fmt, stdout, with_flags
from ..progress import RichProgress


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def export(
    model: Path = typer.Argument(..., help="A .pdparams/.safetensors model written by compress (with its sidecar)."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to create (must not exist, or be empty)."),
    fmt: str = typer.Option(",".join(ExportOptions.formats), "--format",
                            help="Comma-separated formats: " + "; ".join(f"{k}: {EXPORTERS[k].description}"
                                                                          for k in FORMATS) + "."),
    opset: int = typer.Option(ExportOptions.opset, help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET}."),
    batch: str = typer.Option(ExportOptions.batch, help="'dynamic' or a fixed batch size N."),
    int8: bool = INT8, int8_force: bool = INT8_FORCE, int8_schemes: Optional[str] = INT8_SCHEMES,
    int8_seconds: float = INT8_SECONDS,
    calib_data: Optional[str] = CALIB_DATA, max_acc_drop: float = MAX_ACC_DROP,
    atol: float = ATOL, rtol: float = RTOL, min_argmax_agreement: float = MIN_ARGMAX,
    min_top5_agreement: float = MIN_TOP5,
    parity_images: str = typer.Option(ExportOptions.parity_images, help="Test images every runtime is verified on: 'auto' (256, fewer "
                                                   "for a large model, at least 32) or a number."),
    force: bool = typer.Option(ExportOptions.force, "--force", help="Replace a previous export in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print export.json to stdout."),
):
    """Export to Paddle Inference and ONNX (optionally INT8), each verified on real test images."""
    options = export_options(formats=fmt, opset=opset, batch=batch, int8=int8, int8_force=int8_force,
                             int8_schemes=int8_schemes, int8_seconds=int8_seconds, calib_data=calib_data,
                             max_acc_drop=max_acc_drop, atol=atol, rtol=rtol, min_argmax_agreement=min_argmax_agreement,
                             min_top5_agreement=min_top5_agreement, parity_images=parity_images, force=force)
    info = export_model(model, out, options, progress=RichProgress())
    if as_json:
        return emit_json(info)
    _print_export(info, model, out)


def _print_export(info: dict, model: Path, out: Path) -> None:
    opset_txt = f", opset {info['opset']}" if info.get("opset") else ""
    stdout.print(f"exported {model} -> {out} (batch {info['batch']}{opset_txt}, "
                 f"{info['seconds']['total']:.1f} s)")
    width = max((len(rel) for rel in info["files"]), default=0)
    for rel, f in info["files"].items():
        stdout.print(f"  {rel:<{width}} {_size(f['bytes']):>10}  sha256 {f['sha256'][:12]}")
    for name, fig in info["parity"]["runtimes"].items():
        stdout.print(f"  parity {name:<24} max abs diff {fig['max_abs_diff']:.1e} "
                     f"({fig['worst_tolerance_use'] * 100:.1f}% of the tolerance), argmax "
                     f"{fig['argmax_agreement'] * 100:.1f}%, top-{fig['top_k']} {fig['top5_agreement'] * 100:.1f}% "
                     f"on {fig['n_inputs']} test images")
    if info.get("int8"):
        _print_int8(info["int8"])
    parts = [f"{k}: {v['ops']} ops, {v['param_elements']:,} params" for k, v in info["graphs"].items()]
    if parts:
        stdout.print("  graphs " + "; ".join(parts))


def _pct(v, spec=".2f"):
    return fmt(None if v is None else v * 100, spec)


def _print_int8(q: dict) -> None:
    cpu = q["cpu"]
    stdout.print(f"  int8 on {cpu['model']} (8-bit dot product: {cpu['int8_dot'] or 'none'}), 1 thread, batch 1:")
    for runtime, r in q.items():
        if not isinstance(r, dict) or "candidates" not in r:
            continue
        stdout.print(f"    {runtime}: fp32 {fmt(r['fp32'].get('latency_ms_p50'), '.2f')} ms, "
                     f"accuracy {_pct(r['fp32'].get('accuracy'))}%")
        for c in r["candidates"]:
            if c["error"]:
                stdout.print(f"      {c['scheme']:<12} failed: {c['error']}")
                continue
            drop = None if c["accuracy_drop"] is None else 0.0 - c["accuracy_drop"]
            kept = "  <- kept" if c["scheme"] == r["chosen"] else ""
            stdout.print(f"      {c['scheme']:<12} {fmt(c['latency_ms_p50'], '.2f')} ms ({fmt(c['speedup'], '.2f')}x), "
                         f"accuracy {_pct(c['accuracy'])}% ({_pct(drop, '+.2f')} points){kept}")
        stdout.print(f"    {with_flags(r['decision'])}", soft_wrap=True)
