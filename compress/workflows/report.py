"""The ``report`` command: measure models (accuracy, latency on both runtimes, FLOPs,
parameters, file sizes) and write the accuracy-vs-latency report.

Every model is exported (and verified) first; latency is then measured on the
exported files, all models in alternation so machine drift hits all alike.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..data import load_data
from ..errors import CompressError
from ..export import export_model
from ..flops import count_flops
from ..layers import count_params
from ..measurement import group_by_label, machine_info, measure_latency_isolated
from ..models import load_model
from ..paths import Output, check_outputs, data_inputs, model_inputs
from ..progress import NULL, Progress
from ..reporting import build_report, write_report
from ..runtimes.layout import EXPORT_JSON
from ..training import accuracy
from ..verify import check_export, verify_export

REPORT_FILES = ("report.json", "report.md", "report.html", "pareto.png")  # what reporting.write_report writes


def model_name(path) -> str:
    return Path(path).stem


def ensure_export(model_path, export_dir, progress: Progress = NULL) -> dict:
    """Export ``model_path`` to ``export_dir`` unless a verified export of the same weights is already there
    (every file as export.json lists it: :func:`compress.verify.verify_export`)."""
    model_path, export_dir = Path(model_path), Path(export_dir)
    if (export_dir / EXPORT_JSON).is_file():
        problems = verify_export(export_dir, model_path)
        if not problems:
            return json.loads((export_dir / EXPORT_JSON).read_text())
        progress.log(f"{export_dir}: {'; '.join(problems[:3])}; exporting again")
    return export_model(model_path, export_dir, force=True, progress=progress)


def report_outputs(out_dir: Path, names: list[str]) -> list[Output]:
    """Every path a report into ``out_dir`` writes: its files and one export directory per model."""
    return ([Output(out_dir / f, "out_dir") for f in REPORT_FILES]
            + [Output(out_dir / "exports" / n, "out_dir", tree=True) for n in names])


def model_entry(path, data: str | None = None) -> dict:
    """Accuracy, size and lineage of one model (no latency yet)."""
    bundle = load_model(path)
    sc = bundle.sidecar
    source = data or sc.data_source
    acc = None
    if source:
        ds = load_data(source, bundle.input_shape)
        acc = accuracy(bundle.model, ds.x_test, ds.y_test)
    steps = sc.prune_steps
    flops, _ = count_flops(bundle.model, bundle.input_shape)
    return {"name": model_name(path), "path": str(path),
            "keep": steps[-1]["keep_total"] if steps else 1.0,
            "parent": model_name(steps[-1]["parent"]) if steps else None,
            "accuracy": acc, "params": count_params(bundle.model), "flops": flops,
            "blocks": len(sc.blocks), "data": source}


def report(models: list, out_dir, data: str | None = None, threads: int = 1, batch_sizes=(1, 32),
           warmup: int = 10, min_runs: int = 100, max_seconds: float = 60.0, onednn: bool = True,
           progress: Progress = NULL) -> dict:
    """Measure ``models`` and write report.json, report.md, report.html and pareto.png into ``out_dir``."""
    if not batch_sizes or min(batch_sizes) < 1:  # checked before any model is exported
        raise CompressError(f"`batch_sizes` must be positive integers, got {list(batch_sizes)}", param="batch_sizes")
    if not models:
        raise CompressError("give at least one model")
    paths = [Path(m) for m in models]
    names = [model_name(p) for p in paths]
    if len(set(names)) != len(names):
        raise CompressError("models must have distinct file names (their names label the report)")
    if threads < 1:
        raise CompressError("`threads` must be at least 1", param="threads")
    out_dir = Path(out_dir)
    check_outputs(report_outputs(out_dir, names), [i for p in paths for i in model_inputs(p)] + data_inputs(data))
    entries, targets = [], []
    for p in paths:
        progress.log(f"evaluating {p}")
        entry = model_entry(p, data)
        export_dir = out_dir / "exports" / entry["name"]
        info = ensure_export(p, export_dir, progress=progress)
        entry["export_dir"] = str(export_dir.relative_to(out_dir))  # relative to the report directory
        entry["file_sizes"] = {f: v.get("bytes") for f, v in info["files"].items()}
        entries.append(entry)
        targets += [(entry["name"], "paddle", export_dir), (entry["name"], "onnxruntime", export_dir)]
    for p, e in zip(paths, entries):  # unchanged since it was verified (or exported): what is timed is the model
        check_export(out_dir / e["export_dir"], p)
    records = measure_latency_isolated(targets, batch_sizes=batch_sizes, threads=threads, warmup=warmup,
                                       min_runs=min_runs, max_seconds=max_seconds, onednn=onednn, progress=progress)
    by_label = group_by_label(records)
    for e in entries:
        e["runtimes"] = by_label.get(e["name"], [])
    baseline = next((e["name"] for e in entries if e["parent"] is None), None)
    rep = build_report(entries, machine_info(threads), baseline_name=baseline,
                       settings={"min_runs_asked": min_runs, "max_seconds": max_seconds})
    rep["files"] = {k: str(v) for k, v in write_report(rep, out_dir).items()}
    return rep
