"""`compress export`: Paddle Inference and ONNX (optionally INT8), each verified on real test images."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from compress.export import DEFAULT_FORMATS, DEFAULT_OPSET, EXPORTERS, MAX_OPSET, MIN_OPSET, ExportOptions, export_model

from ..output import emit_json, stdout
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
    fmt: str = typer.Option(",".join(DEFAULT_FORMATS), "--format",
                            help="Comma-separated formats: " + "; ".join(f"{k}: {e.description}"
                                                                          for k, e in EXPORTERS.items()) + "."),
    opset: int = typer.Option(DEFAULT_OPSET, help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET}."),
    batch: str = typer.Option("dynamic", help="'dynamic' or a fixed batch size N."),
    int8: bool = typer.Option(False, "--int8", help="Also write model.int8.onnx (onnxruntime static quantization)."),
    calib_data: Optional[str] = typer.Option(None, help="Calibration images for --int8: 'digits', an image folder "
                                                        "or an .npz (default: the model's own data)."),
    max_acc_drop: float = typer.Option(1.0, help="INT8: largest allowed test-accuracy drop, in points."),
    atol: float = typer.Option(1e-4, help="Largest allowed abs difference of logits between runtimes."),
    force: bool = typer.Option(False, "--force", help="Replace a previous export in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print export.json to stdout."),
):
    """Export to Paddle Inference and ONNX (optionally INT8), each verified on real test images."""
    options = ExportOptions(formats=fmt, opset=opset, batch=batch, int8=int8, calib_data=calib_data,
                            max_acc_drop=max_acc_drop / 100.0, atol=atol, force=force)
    info = export_model(model, out, options, progress=RichProgress())
    if as_json:
        return emit_json(info)
    _print_export(info, model, out)


def _print_export(info: dict, model: Path, out: Path) -> None:
    opset_txt = f", opset {info['opset']}" if info.get("opset") else ""
    stdout.print(f"exported {model} -> {out} (batch {info['batch']}{opset_txt}, "
                 f"{info['seconds']['total']:.1f} s)")
    for rel, f in info["files"].items():
        stdout.print(f"  {rel:<26} {_size(f['bytes']):>10}  sha256 {f['sha256'][:12]}")
    for name, fig in info["parity"]["runtimes"].items():
        stdout.print(f"  parity {name:<24} max abs diff {fig['max_abs_diff']:.1e}, "
                     f"argmax {fig['argmax_agreement'] * 100:.1f}% on {fig['n_inputs']} test images")
    if "int8" in info:
        q = info["int8"]
        stdout.print(f"  int8 accuracy {q['int8_accuracy'] * 100:.2f}% vs fp32 {q['fp32_accuracy'] * 100:.2f}% "
                     f"(drop {q['accuracy_drop'] * 100:.2f} points, allowed {q['max_accuracy_drop'] * 100:.2f})")
    parts = [f"{k}: {v['ops']} ops, {v['param_elements']:,} params" for k, v in info["graphs"].items()]
    if parts:
        stdout.print("  graphs " + "; ".join(parts))
