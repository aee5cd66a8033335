"""The accuracy-vs-latency report: report.json, report.md, pareto.png, report.html.

Input: one entry (a dict) per model. ``build_report`` compares every model with
the original and returns the report; :func:`compress.measure.rendering.write_report` writes its four files.

Entry (input) schema — keys a caller provides per model::

    name        str    unique label of the model (e.g. "original", "keep0.5")
    path        str    its weights file (or export directory)
    keep        float  keep ratio, 1.0 for the original
    keep_flops  float|None  for a model pruned to a FLOPs budget: its FLOPs ratio to the original (the keep
                       column then shows e.g. ``F0.52``)
    parent      str|None  name (or path) of the model it was pruned from; None for the original
    accuracy    float|None  test accuracy, 0..1
    test_images int    (optional) test images the accuracy is on; ``correct``: (optional) per test image,
                       right or not (the same images for every model): intervals and paired differences
    data, input_shape  (optional) the test data and input size, named in the notes
    params      int    parameter count
    flops       int    multiply-accumulates of one forward pass at batch 1
    file_sizes  {file: bytes}  exported files, e.g. {"model.onnx": 123456}
    blocks      int    kept removable blocks
    removed     list of str  (optional) the units its prune steps removed, by name: block paths, or branches
                       as ``attn at depth 3`` / ``mlp at depth 5``
    runtimes    list of latency records (``compress.measure.latency.measure_latency`` gives them,
                see ``compress.measure.latency.group_by_label``):
        runtime  str  "paddle", "onnxruntime", or any other name (e.g. "onnxruntime-int8")
        batch    int
        threads  int
        latency_ms_p50, latency_ms_p90, latency_ms_p99, latency_ms_mean   float, ms
        runs     int   timed runs
        optional: warmup, onednn, latency_ms_min, latency_ms_max, alternated_with,
                  stopped_by, path, and accuracy (overrides the model's, e.g. for an int8 file)

report.json (output) schema::

    format      "compress-report/1"
    created     ISO-8601 UTC time
    baseline    name of the original every ratio is relative to (None if there is none)
    machine     compress.measure.latency.machine_info(): cpu, cores, threads, os, python, versions
    settings    measurement settings (threads, warmup, runs, alternation, batch sizes)
    headline    one line, see ``headline``
    notes       list of str: how the numbers were measured and what the ratios mean
    models      the entries above (without ``correct``), each with added:
                  is_baseline, flops_ratio, params_ratio, accuracy_delta_points, accuracy_interval
                  [low, high] (95 % Wilson), accuracy_delta (against the original on the same images:
                  images, gained, lost, net_images, p_value (McNemar exact), inside_noise), and in each
                  runtimes record: speedup, latency_ratio, flops_ratio (an INT8 record with its own
                  accuracy also its own accuracy_interval and accuracy_delta)
    rows        flat, one per model x runtime x batch (x threads):
                  model, path, keep, keep_flops, parent, blocks, accuracy, accuracy_delta_points,
                  params, params_ratio, flops, flops_ratio, ideal_speedup (1/flops_ratio),
                  runtime, batch, threads, latency_ms_p50, latency_ms_p90, latency_ms_p99,
                  latency_ms_mean, runs, speedup, latency_ratio,
                  pareto (no other model on the same runtime/batch/threads is at least as
                  accurate and at least as fast, and better in one; None without accuracy),
                  test_images, accuracy_low, accuracy_high, accuracy_delta_images, accuracy_delta_p,
                  accuracy_inside_noise (p >= 0.05: the difference is inside the noise)

Ratios: speedup = p50(original) / p50(model) on the same runtime, batch and thread
count (None when the original was not measured there); latency_ratio = its
inverse; flops_ratio = flops(model) / flops(original). Removing blocks removes
their FLOPs, so the ideal latency ratio is the FLOPs ratio; the gap is overhead
that block removal does not touch. Non-finite numbers are written as null.
"""
from __future__ import annotations

import copy
import datetime as _dt
import math
import os

from ..common.errors import CompressError
from ..runtimes import runtime_label
from .summary import _row_evidence, headline
from .uncertainty import paired_difference, wilson_interval

REPORT_FORMAT = "compress-report/1"
_RECORD_REQUIRED = ("runtime", "batch", "latency_ms_p50")
ROW_KEYS = ("model", "path", "keep", "keep_flops", "parent", "blocks", "accuracy", "accuracy_delta_points", "params",
            "params_ratio", "flops", "flops_ratio", "ideal_speedup", "runtime", "batch", "threads",
            "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_mean", "runs", "speedup",
            "latency_ratio", "pareto", "test_images", "accuracy_low", "accuracy_high", "accuracy_delta_images",
            "accuracy_delta_p", "accuracy_inside_noise")


# --------------------------------------------------------------------------- numbers
def _num(v):
    """Finite float/int or None (NaN and infinities become None: report.json stays strict JSON)."""
    if v is None or isinstance(v, bool):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    if not math.isfinite(f):
        return None
    return int(v) if isinstance(v, int) or (hasattr(v, "dtype") and "int" in str(v.dtype)) else f


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return str(obj)
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalars
        obj = obj.item()
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return _num(obj)
    return obj


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return _num(a / b)


# --------------------------------------------------------------------------- building
def _find_baseline(entries: list[dict], baseline_name: str | None) -> dict | None:
    if baseline_name is not None:
        for e in entries:
            if e["name"] == baseline_name:
                return e
        raise CompressError(f"no model named {baseline_name!r} in the report (models: {', '.join(e['name'] for e in entries)})")
    originals = [e for e in entries if not e.get("parent") and e.get("keep") in (None, 1, 1.0)]
    full = [e for e in originals if e.get("keep") is not None] or originals
    if len(full) == 1:
        return full[0]
    if len(full) > 1:
        raise CompressError(f"several models look like the original ({', '.join(e['name'] for e in full)}); name the baseline")
    return None


def _record_key(r: dict) -> tuple:
    return (r["runtime"], int(r["batch"]), r.get("threads"))


def _without_correct(e: dict) -> dict:
    """An entry without its per-image correctness (nor its records'): what the report keeps of it."""
    e = {k: v for k, v in e.items() if k != "correct"}
    if isinstance(e.get("runtimes"), list):
        e["runtimes"] = [{k: v for k, v in r.items() if k != "correct"} if isinstance(r, dict) else r
                         for r in e["runtimes"]]
    return e


def _validate(entries) -> list[dict]:
    if not entries:
        raise CompressError("nothing to report: no models")
    out, names = [], set()
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not e.get("name"):
            raise CompressError(f"report entry {i} has no name")
        e = _clean(copy.deepcopy(_without_correct(e)))
        if e["name"] in names:
            raise CompressError(f"two models are named {e['name']!r}; names must be unique in a report")
        names.add(e["name"])
        e.setdefault("runtimes", [])
        seen = set()
        for r in e["runtimes"]:
            missing = [k for k in _RECORD_REQUIRED if r.get(k) is None]
            if missing:
                raise CompressError(f"{e['name']}: a latency record lacks {', '.join(missing)}")
            r.pop("label", None)
            key = _record_key(r)
            if key in seen:
                raise CompressError(f"{e['name']}: two latency records for {key[0]} batch {key[1]} threads {key[2]}; "
                                    "give them distinct runtime names")
            seen.add(key)
        out.append(e)
    return out


def _per_image(entries) -> dict:
    """(model, runtime or None) -> per-image correctness on the test split, taken out of the entries (a
    model's ``correct``; an INT8 record's own): used for the intervals and paired differences, never written
    (:func:`_validate` leaves them out of its copies)."""
    out = {}
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict):
            if e.get("correct") is not None:
                out[(e.get("name"), None)] = e["correct"]
            for r in e.get("runtimes") or []:
                if isinstance(r, dict) and r.get("correct") is not None:
                    out[(e.get("name"), r.get("runtime"))] = r["correct"]
    return out


def _judge(holder: dict, acc, n, mine, base_correct) -> None:
    """An accuracy's interval, and its paired difference from the baseline's (same test images)."""
    if acc is not None and n:
        holder["accuracy_interval"] = list(wilson_interval(round(acc * n), n))
    if mine is not None and base_correct is not None and len(mine) == len(base_correct):
        holder["accuracy_delta"] = paired_difference(base_correct, mine).to_json()


def _evidence(models: list[dict], base: dict | None, correct: dict) -> None:
    """Test-image counts, Wilson intervals and paired differences (McNemar) for every model and INT8 record."""
    base_correct = correct.get((base["name"], None)) if base else None
    for m in models:
        mine = correct.get((m["name"], None))
        n = m.get("test_images") or (len(mine) if mine is not None else None)
        m["test_images"] = n
        _judge(m, m.get("accuracy"), n, None if m is base else mine, base_correct)
        for r in m["runtimes"]:
            own = correct.get((m["name"], r["runtime"]))
            if own is not None or r.get("accuracy") is not None:
                _judge(r, r.get("accuracy"), len(own) if own is not None else n, own, base_correct)


def _mark_pareto(rows: list[dict]) -> None:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["runtime"], r["batch"], r["threads"]), []).append(r)
    for group in groups.values():
        for r in group:
            if r["accuracy"] is None or r["latency_ms_p50"] is None:
                r["pareto"] = None
                continue
            r["pareto"] = not any(
                o is not r and o["accuracy"] is not None and o["latency_ms_p50"] is not None
                and o["accuracy"] >= r["accuracy"] and o["latency_ms_p50"] <= r["latency_ms_p50"]
                and (o["accuracy"] > r["accuracy"] or o["latency_ms_p50"] < r["latency_ms_p50"])
                for o in group)


def _settings_from(models: list[dict]) -> dict:
    recs = [r for m in models for r in m["runtimes"]]

    def values(key):
        return sorted({r[key] for r in recs if r.get(key) is not None}, key=lambda v: (str(type(v)), v))

    runs = [r["runs"] for r in recs if r.get("runs") is not None]
    alt = values("alternated_with")
    return {"threads": values("threads"), "batch_sizes": values("batch"), "warmup": values("warmup"),
            "runs_min": min(runs) if runs else None, "runs_max": max(runs) if runs else None,
            "alternation": bool(alt) and max(alt) > 1, "alternated_with": max(alt) if alt else None,
            "burst": values("burst"), "rewarm": values("rewarm"),
            "onednn": values("onednn")}


def build_report(entries: list[dict], machine: dict | None, baseline_name: str | None = None,
                 settings: dict | None = None, notes: list[str] | None = None) -> dict:
    """Compare every model with the original; return the report (see the module docstring).

    The original is ``baseline_name`` if given, else the one model with keep 1.0 and
    no parent. Without one, the ratios are None. ``settings`` (e.g. the arguments
    given to ``measure_latency``) are merged over those read off the latency
    records; ``notes`` are appended to the generated ones.
    """
    correct = _per_image(entries)
    models = _validate(entries)
    base = _find_baseline(models, baseline_name)
    _evidence(models, base, correct)
    base_lat = {_record_key(r): r["latency_ms_p50"] for r in base["runtimes"]} if base else {}
    base_acc = base.get("accuracy") if base else None

    rows = []
    for m in models:
        m["is_baseline"] = m is base
        m["flops_ratio"] = _ratio(m.get("flops"), base.get("flops")) if base else None
        m["params_ratio"] = _ratio(m.get("params"), base.get("params")) if base else None
        acc = m.get("accuracy")
        m["accuracy_delta_points"] = _num((acc - base_acc) * 100) if acc is not None and base_acc is not None else None
        for r in m["runtimes"]:
            b = base_lat.get(_record_key(r))
            r["speedup"] = _ratio(b, r["latency_ms_p50"])
            r["latency_ratio"] = _ratio(r["latency_ms_p50"], b)
            r["flops_ratio"] = m["flops_ratio"]
            r_acc = r.get("accuracy", acc)
            rows.append({
                "model": m["name"], "path": m.get("path"), "keep": m.get("keep"), "keep_flops": m.get("keep_flops"),
                "parent": m.get("parent"),
                "blocks": m.get("blocks"), "accuracy": r_acc,
                "accuracy_delta_points": (_num((r_acc - base_acc) * 100)
                                          if r_acc is not None and base_acc is not None else None),
                "params": m.get("params"), "params_ratio": m["params_ratio"],
                "flops": m.get("flops"), "flops_ratio": m["flops_ratio"],
                "ideal_speedup": _ratio(1.0, m["flops_ratio"]),
                "runtime": r["runtime"], "batch": r["batch"], "threads": r.get("threads"),
                **{k: r.get(k) for k in ("latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_mean", "runs")},
                "speedup": r["speedup"], "latency_ratio": r["latency_ratio"], "pareto": None,
                **_row_evidence(r if "accuracy_interval" in r else m, m),
            })
    _mark_pareto(rows)

    merged = {**_settings_from(models), **(_clean(settings) if settings else {})}
    report = {
        "format": REPORT_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "baseline": base["name"] if base else None,
        "machine": _clean(machine or {}),
        "settings": merged,
        "headline": None,
        "notes": [],
        "models": models,
        "rows": rows,
    }
    report["notes"] = _notes(report) + list(notes or [])
    report["headline"] = headline(report)
    return report


SPREAD_LIMIT = 1.5   # p90 / p50 above this: a latency too spread to compare on


def _evidence_notes(report: dict) -> list[str]:
    """What the accuracies rest on, and when the latencies cannot be trusted (load, spread)."""
    out = []
    sized = {(m.get("data"), m.get("test_images"), tuple(m.get("input_shape") or ())) for m in report["models"]
             if m.get("test_images")}
    for data, n, shape in sorted(sized, key=str):
        size = f" at {'x'.join(map(str, shape))}" if shape else ""
        out.append(f"Test data: {data or 'the given data'}, {n} test images{size}. Intervals are 95 % Wilson "
                   "intervals; Δ images is the net change in test images classified right against the original "
                   "(same images), '(noise)' where McNemar's exact test gives p >= 0.05: the test split cannot "
                   "tell the two models apart.")
    load, cores = report["settings"].get("load_average"), report["machine"].get("usable_cores")
    # the 1-minute load average lags: the report's own evaluation and export count in it before timing, so only
    # a load of at least the usable cores (more runnable work than cores) says that others competed
    if load and cores and max(load) >= cores:
        out.append(f"WARNING: the machine was busy while timing (load average {max(load):.1f} on {cores} usable "
                   "cores, before/after): latencies and ratios may be off; re-time on an idle machine.")
    spread = sorted({f"{r['model']} on {runtime_label(r['runtime'])} batch {r['batch']}" for r in report["rows"]
                     if r.get("latency_ms_p50") and r.get("latency_ms_p90")
                     and r["latency_ms_p90"] / r["latency_ms_p50"] > SPREAD_LIMIT})
    if spread:
        out.append(f"WARNING: p90 is more than {SPREAD_LIMIT}x p50 for {', '.join(spread)}: those latencies are too "
                   "spread to compare closely (a busy machine, or frequency scaling); re-time.")
    return out


def _notes(report: dict) -> list[str]:
    s, machine = report["settings"], report["machine"]
    notes = []
    threads = ", ".join(str(t) for t in s.get("threads") or []) or "?"
    if report["rows"]:
        runs = (f"{s['runs_min']}" if s.get("runs_min") == s.get("runs_max")
                else f"{s.get('runs_min')} to {s.get('runs_max')}")
        warm = ", ".join(str(w) for w in s.get("warmup") or []) or "?"
        cores = machine.get("logical_cores")
        notes.append(f"Latency is measured, not estimated: {threads} thread(s)"
                     f"{f' on a {cores}-core machine' if cores else ''}, {warm} warm-up runs then {runs} timed runs "
                     "per model and batch size; p50/p90/p99 are percentiles of the per-run wall time "
                     "(input copy in, inference, logits copy out).")
        if s.get("alternation"):
            burst, rewarm = (s.get("burst") or ["?"])[0], (s.get("rewarm") or ["?"])[0]
            notes.append(f"The {s.get('alternated_with')} model/runtime pairs of each batch size were measured "
                         f"in alternation (round-robin; each turn {rewarm} untimed runs, then {burst} timed runs "
                         "of one model), so machine drift hit all of them alike while each model was timed in "
                         "its steady state.")
        else:
            notes.append("The models were not measured in alternation: drift between their measurements "
                         "is not cancelled out.")
        notes.append("Precision is FP32 unless the runtime says int8; ONNX Runtime ran on its CPUExecutionProvider, "
                     "Paddle Inference on the CPU.")
        onednn = s.get("onednn") or []
        if onednn:
            notes.append("Paddle Inference ran with oneDNN " + (" and ".join("on" if v else "off" for v in onednn)) + ".")
    else:
        notes.append("No latency was measured.")
    if report["baseline"]:
        notes.append(f"speedup = p50 of {report['baseline']} / p50 of the model, same runtime, batch size and "
                     "threads; latency ratio is its inverse. FLOPs ratio = FLOPs of the model / FLOPs of "
                     f"{report['baseline']}: removing blocks removes their FLOPs, so the ideal latency ratio is "
                     "the FLOPs ratio, and a latency ratio above it is overhead that block removal leaves in place.")
        notes.append(f"Accuracy is on the test split; Δ is in percentage points against {report['baseline']}.")
    else:
        notes.append("No original (keep 1.0, no parent) in the report: speedups and ratios are not computed.")
    notes += _evidence_notes(report)
    notes.append("FLOPs count multiply-accumulates of one image (the paddle.flops convention). "
                 "Absolute times depend on this machine and its load: compare ratios.")
    return notes
