"""The ``report`` command: measure models (accuracy, latency on both runtimes, FLOPs,
parameters, file sizes) and write the accuracy-vs-latency report.

Every model is exported (and verified) first; latency is then measured on the
exported files, all models in alternation so machine drift hits all alike.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from ..data import ModelData
from ..common.errors import CompressError
from ..export import ExportOptions, export_model
from ..export.job import batched
from ..graph.flops import count_flops
from ..common.layers import count_params
from ..measure.latency import TIMING, group_by_label, machine_info, measure_latency_isolated
from ..model.bundle import load_model
from ..model.paths import Output, check_outputs, data_inputs, model_inputs
from ..common.progress import NULL, Progress
from ..measure.reporting import build_report
from ..measure.rendering import write_report
from ..runtimes import INT8_RUNTIMES, make_runner
from ..runtimes.layout import EXPORT_JSON
from ..training.evaluate import model_runner, split_correct
from ..export.verify import check_export, verify_export

REPORT_FILES = ("report.json", "report.md", "report.html", "pareto.png")  # what reporting.write_report writes


def model_name(path) -> str:
    return Path(path).stem


def _same_options(export_dir: Path, options: ExportOptions) -> bool:
    try:
        info = json.loads((export_dir / EXPORT_JSON).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return info.get("options") == json.loads(json.dumps(options.to_json()))


def ensure_export(model_path, export_dir, options: ExportOptions | None = None, progress: Progress = NULL) -> dict:
    """Export ``model_path`` to ``export_dir`` unless a verified export of the same weights, with the same
    options, is already there (every file as export.json lists it: :func:`compress.export.verify.verify_export`)."""
    model_path, export_dir = Path(model_path), Path(export_dir)
    options = dataclasses.replace(options or ExportOptions(), force=True)
    if (export_dir / EXPORT_JSON).is_file():
        problems = verify_export(export_dir, model_path)
        if not problems and _same_options(export_dir, options):
            return json.loads((export_dir / EXPORT_JSON).read_text())
        why = "; ".join(problems[:3]) if problems else "exported with other options"
        progress.log(f"{export_dir}: {why}; exporting again")
    return export_model(model_path, export_dir, options, progress=progress)


def report_outputs(out_dir: Path, names: list[str]) -> list[Output]:
    """Every path a report into ``out_dir`` writes: its files and one export directory per model."""
    return ([Output(out_dir / f, "out_dir") for f in REPORT_FILES]
            + [Output(out_dir / "exports" / n, "out_dir", tree=True) for n in names])


def _evaluate(path, data: str | None) -> tuple[dict, object]:
    """A model's report entry (accuracy, size, lineage; no latency yet) and its test data (None without one),
    through the preprocessing the model's sidecar records."""
    bundle = load_model(path)
    sc = bundle.sidecar
    source = data or sc.data_source
    ds = ModelData.of_model(bundle, source) if source else None
    correct = split_correct(model_runner(bundle.model), ds, "test") if ds is not None else None
    acc = float(correct.mean()) if correct is not None and correct.size else None
    steps = sc.prune_steps
    flops, _ = count_flops(bundle.model, bundle.input_shape)
    budgeted = any(s.get("keep_flops") is not None for s in steps)
    return {"name": model_name(path), "path": str(path),
            "keep": steps[-1]["keep_total"] if steps else 1.0,
            "keep_flops": steps[-1].get("flops_ratio_total") if budgeted else None,
            "parent": model_name(steps[-1]["parent"]) if steps else None,
            "accuracy": acc, "correct": correct, "test_images": int(correct.size) if correct is not None else None,
            "split": "test", "input_shape": list(bundle.input_shape),
            "params": count_params(bundle.model), "flops": flops, "blocks": len(sc.blocks), "data": source,
            "removed": [u.get("label") or u.get("unit") for u in sc.removed_units]}, ds


def model_entry(path, data: str | None = None) -> dict:
    """Accuracy, size and lineage of one model (no latency yet); ``correct``: per test image, right or not."""
    return _evaluate(path, data)[0]


def int8_runtimes(export_dir: Path) -> list[str]:
    """The INT8 runtimes an export has a model for (``onnxruntime-int8``, ``paddle-int8``)."""
    return [rt for rt, rel in INT8_RUNTIMES.values() if (Path(export_dir) / rel).is_file()]


def _int8_correct(runtime: str, export_dir: Path, ds):
    """Per test image, whether an export's INT8 model on ``runtime`` got it right (the report's rows carry
    its accuracy, interval and paired difference); None without test data."""
    if ds is None:
        return None
    runner = make_runner(runtime, export_dir, threads=1)
    return split_correct(lambda x: batched(runner.run, x.numpy(), "dynamic"), ds, "test")


def given_export(path) -> tuple[Path, Path | None]:
    """(model, export directory) for one of ``report``'s arguments: a model file (no export yet), or an
    export directory that ``export`` or ``prune --export`` wrote, whose model is the one its export.json names."""
    path = Path(path)
    if not (path.is_dir() and (path / EXPORT_JSON).is_file()):
        return path, None
    try:
        source = (json.loads((path / EXPORT_JSON).read_text()).get("source") or {}).get("path")
    except (OSError, ValueError, AttributeError):
        source = None
    if not source or not Path(source).is_file():
        raise CompressError(f"{path}: its {EXPORT_JSON} names no model file that exists ({source!r}); give the "
                            "model instead")
    return Path(source), path


def _reused(p: Path, export_dir: Path, progress: Progress) -> dict:
    """A given export directory, checked to be a verified export of ``p`` with both runtimes the report times."""
    problems = verify_export(export_dir, p)
    if problems:
        raise CompressError(f"{export_dir}: not a verified export of {p}: {problems[0]}")
    info = json.loads((export_dir / EXPORT_JSON).read_text())
    if not {"paddle", "onnx"} <= set(info.get("formats") or []):
        raise CompressError(f"{export_dir}: the report times Paddle Inference and ONNX Runtime, but this export has "
                            f"{', '.join(info.get('formats') or []) or 'no format'}; export with both")
    progress.log(f"{export_dir}: a verified export of {p}, reused")
    return info


def _prepare(p: Path, out_dir: Path, data, export, progress: Progress, given: Path | None = None) -> tuple[dict, list]:
    """One model: evaluated, exported (and verified) unless ``given`` a verified export of it, its INT8 models
    scored; (entry, timing targets)."""
    progress.log(f"evaluating {p}")
    entry, ds = _evaluate(p, data)
    export_dir = given.resolve() if given is not None else out_dir / "exports" / entry["name"]
    info = _reused(p, export_dir, progress) if given is not None else ensure_export(p, export_dir, export,
                                                                                    progress=progress)
    # relative to the report directory (a reused export: where it is)
    entry["export_dir"] = str(export_dir if given is not None else export_dir.relative_to(out_dir))
    entry["file_sizes"] = {f: v.get("bytes") for f, v in info["files"].items()}
    entry["int8_correct"] = {rt: _int8_correct(rt, export_dir, ds) for rt in int8_runtimes(export_dir)}
    entry["int8_accuracy"] = {rt: float(c.mean()) if c is not None and c.size else None
                              for rt, c in entry["int8_correct"].items()}
    targets = [(entry["name"], rt, export_dir) for rt in ("paddle", "onnxruntime", *entry["int8_accuracy"])]
    return entry, targets


def _check(models, batch_sizes, threads) -> list[Path]:
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
    return paths


def report(models: list, out_dir, data: str | None = None, threads: int = TIMING.threads,
           batch_sizes=TIMING.batch_sizes, warmup: int = TIMING.warmup, min_runs: int = TIMING.min_runs,
           max_seconds: float = TIMING.max_seconds, onednn: bool = TIMING.onednn,
           progress: Progress = NULL, export: ExportOptions | None = None) -> dict:
    """Measure ``models`` and write report.json, report.md, report.html and pareto.png into ``out_dir``.

    ``models``: weights files, or export directories (``compress export``, ``prune --export``): an export
    that verifies against the model its export.json names is timed where it is, not exported again.

    ``export``: how each model is exported and verified first (tolerances, INT8); its formats must
    include ``paddle`` and ``onnx``, the runtimes timed. An export with an INT8 model adds rows for
    its INT8 runtime (``ONNX Runtime (int8)``, ``Paddle Inference (int8)``), with that model's accuracy.
    """
    resolved = [given_export(m) for m in models or []]
    paths = _check([m for m, _ in resolved], batch_sizes, threads)
    given = {p: e for p, (_, e) in zip(paths, resolved)}
    if export is not None and not {"paddle", "onnx"} <= set(export.formats):
        raise CompressError("the report times Paddle Inference and ONNX Runtime: `formats` must include paddle "
                            "and onnx", param="formats")
    out_dir = Path(out_dir)
    check_outputs(report_outputs(out_dir, [model_name(p) for p in paths]),
                  [i for p in paths for i in model_inputs(p)] + data_inputs(data))
    created = not os.path.lexists(out_dir)
    try:
        return _report(paths, out_dir, data, threads, batch_sizes, warmup, min_runs, max_seconds, onednn, progress,
                       export, given)
    except BaseException:
        if created:   # a report that did not finish leaves nothing of its own behind (its exports included)
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _report(paths, out_dir: Path, data, threads, batch_sizes, warmup, min_runs, max_seconds, onednn,
            progress: Progress, export, given: dict | None = None) -> dict:
    entries, targets = [], []
    for p in paths:
        entry, more = _prepare(p, out_dir, data, export, progress, (given or {}).get(p))
        entries.append(entry)
        targets += more
    for p, e in zip(paths, entries):  # unchanged since it was verified (or exported): what is timed is the model
        check_export(out_dir / e["export_dir"], p)
    load_before = os.getloadavg()[0]
    records = measure_latency_isolated(targets, batch_sizes=batch_sizes, threads=threads, warmup=warmup,
                                       min_runs=min_runs, max_seconds=max_seconds, onednn=onednn, progress=progress)
    load = [round(load_before, 2), round(os.getloadavg()[0], 2)]   # 1-minute load average before and after
    by_label = group_by_label(records)
    for e in entries:
        e["runtimes"] = by_label.get(e["name"], [])
        int8_correct = e.pop("int8_correct")
        for r in e["runtimes"]:
            if r["runtime"] in e["int8_accuracy"]:
                r["accuracy"] = e["int8_accuracy"][r["runtime"]]
                r["correct"] = int8_correct[r["runtime"]]
    baseline = next((e["name"] for e in entries if e["parent"] is None), None)
    rep = build_report(entries, machine_info(threads), baseline_name=baseline,
                       settings={"min_runs_asked": min_runs, "max_seconds": max_seconds, "load_average": load})
    rep["files"] = {k: str(v) for k, v in write_report(rep, out_dir).items()}
    return rep
