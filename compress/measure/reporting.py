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
    models      the entries above, each with added:
                  is_baseline, flops_ratio, params_ratio, accuracy_delta_points, and in each
                  runtimes record: speedup, latency_ratio, flops_ratio
    rows        flat, one per model x runtime x batch (x threads):
                  model, path, keep, keep_flops, parent, blocks, accuracy, accuracy_delta_points,
                  params, params_ratio, flops, flops_ratio, ideal_speedup (1/flops_ratio),
                  runtime, batch, threads, latency_ms_p50, latency_ms_p90, latency_ms_p99,
                  latency_ms_mean, runs, speedup, latency_ratio,
                  pareto (no other model on the same runtime/batch/threads is at least as
                  accurate and at least as fast, and better in one; None without accuracy)

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

REPORT_FORMAT = "compress-report/1"
_RECORD_REQUIRED = ("runtime", "batch", "latency_ms_p50")
ROW_KEYS = ("model", "path", "keep", "keep_flops", "parent", "blocks", "accuracy", "accuracy_delta_points", "params",
            "params_ratio", "flops", "flops_ratio", "ideal_speedup", "runtime", "batch", "threads",
            "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_mean", "runs", "speedup",
            "latency_ratio", "pareto")


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


def _validate(entries) -> list[dict]:
    if not entries:
        raise CompressError("nothing to report: no models")
    out, names = [], set()
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not e.get("name"):
            raise CompressError(f"report entry {i} has no name")
        e = _clean(copy.deepcopy(e))
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
    models = _validate(entries)
    base = _find_baseline(models, baseline_name)
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
    notes.append("FLOPs count multiply-accumulates of one image (the paddle.flops convention). "
                 "Absolute times depend on this machine and its load: compare ratios.")
    return notes


# --------------------------------------------------------------------------- headline & table
def _fmt_speed(s: float) -> str:
    if s >= 1:
        return f"{s:.2f}x faster" if s < 1.1 else f"{s:.1f}x faster"
    inv = 1 / s
    return f"{inv:.2f}x slower" if inv < 1.1 else f"{inv:.1f}x slower"


HEADLINE_POINTS = 1.0


def headline(report: dict) -> str:
    """One line: the smallest-keep model within 1 point of the original's accuracy (or, if
    none is, the smallest keep) against the original, batch 1, on its best runtime.

    e.g. ``keep 0.5: 1.8x faster on ONNX Runtime, -0.9 points``.
    """
    models = report.get("models") or []
    base = next((m for m in models if m.get("is_baseline")), None)
    pruned = [m for m in models if not m.get("is_baseline") and m.get("keep") is not None]
    if base is None:
        return "no original in the report: nothing to compare against"
    if not pruned:
        return f"{base['name']} only: no pruned model to compare"
    # the smallest keep that stays within HEADLINE_POINTS of the original; else the smallest keep
    close = [m for m in pruned if (m.get("accuracy_delta_points") or 0.0) >= -HEADLINE_POINTS]
    k = min(m["keep"] for m in (close or pruned))
    candidates = [m for m in pruned if m["keep"] == k]
    rows = [r for r in report.get("rows") or [] if r["model"] in {m["name"] for m in candidates}
            and r.get("speedup") is not None]
    batches = sorted({r["batch"] for r in rows})
    rows = [r for r in rows if r["batch"] == (1 if 1 in batches else (batches[0] if batches else None))]
    best = max(rows, key=lambda r: r["speedup"], default=None)
    chosen = next(m for m in candidates if m["name"] == best["model"]) if best else candidates[0]
    label = keep_label(chosen) if chosen.get("keep_flops") is not None else f"{k:g}"
    who = f"keep {label}" if len(candidates) == 1 else f"{chosen['name']} (keep {label})"
    parts = []
    if best is not None:
        batch = "" if best["batch"] == 1 else f" at batch {best['batch']}"
        parts.append(f"{_fmt_speed(best['speedup'])} on {runtime_label(best['runtime'])}{batch}")
    elif chosen.get("flops_ratio"):
        parts.append(f"{1 / chosen['flops_ratio']:.1f}x fewer FLOPs (latency not measured)")
    delta = best["accuracy_delta_points"] if best is not None else chosen.get("accuracy_delta_points")
    if delta is not None:
        parts.append(f"{delta:+.1f} points")
    return f"{who}: " + (", ".join(parts) if parts else "nothing measured")


def _si(v, unit="") -> str:
    if v is None:
        return "-"
    v = float(v)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g} {suffix}{unit}"
    return f"{v:.3g} {unit}".rstrip()


def _ms(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def _f(v, spec) -> str:
    return "-" if v is None else format(v, spec)


TABLE_COLUMNS = ("model", "keep", "blocks", "accuracy %", "Δ points", "params", "FLOPs", "FLOPs ratio",
                 "runtime", "batch", "threads", "p50 ms", "p90 ms", "p99 ms", "latency ratio", "speedup", "runs")


def render_table(report: dict) -> list[dict[str, str]]:
    """Rows of display strings, keyed by ``TABLE_COLUMNS``, one per model x runtime x batch.

    A model without latency records gets one row with "-" latencies.
    """
    out = []
    rows_by_model: dict[str, list[dict]] = {}
    for r in report.get("rows") or []:
        rows_by_model.setdefault(r["model"], []).append(r)
    for m in report.get("models") or []:
        rows = rows_by_model.get(m["name"]) or [{
            "accuracy": m.get("accuracy"), "accuracy_delta_points": m.get("accuracy_delta_points"),
            "runtime": None, "batch": None, "threads": None}]
        for r in sorted(rows, key=lambda r: (str(r["runtime"]), r["batch"] or 0, r["threads"] or 0)):
            acc = r.get("accuracy")
            out.append({
                "model": m["name"] + (" *" if m.get("is_baseline") else ""),
                "keep": keep_label(m),
                "blocks": _f(m.get("blocks"), "d"),
                "accuracy %": _f(None if acc is None else acc * 100, ".2f"),
                "Δ points": _f(r.get("accuracy_delta_points"), "+.2f"),
                "params": _si(m.get("params")),
                "FLOPs": _si(m.get("flops")),
                "FLOPs ratio": _f(m.get("flops_ratio"), ".3f"),
                "runtime": runtime_label(r["runtime"]) if r["runtime"] else "-",
                "batch": _f(r["batch"], "d"),
                "threads": _f(r["threads"], "d"),
                "p50 ms": _ms(r.get("latency_ms_p50")),
                "p90 ms": _ms(r.get("latency_ms_p90")),
                "p99 ms": _ms(r.get("latency_ms_p99")),
                "latency ratio": _f(r.get("latency_ratio"), ".3f"),
                "speedup": _f(r.get("speedup"), ".2f") + ("x" if r.get("speedup") is not None else ""),
                "runs": _f(r.get("runs"), "d"),
            })
    return out


def keep_label(m: dict) -> str:
    """The keep column: ``F0.52`` (FLOPs ratio) for a model pruned to a FLOPs budget, else its keep ratio."""
    if m.get("keep_flops") is not None:
        return f"F{m['keep_flops']:.2f}"
    return _f(m.get("keep"), "g")
