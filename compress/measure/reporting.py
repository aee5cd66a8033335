"""The accuracy-vs-latency report: report.json, report.md, pareto.png, report.html.

Input: one entry (a dict) per model. ``build_report`` compares every model with
the original and returns the report; ``write_report`` writes its four files.

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

import base64
import copy
import datetime as _dt
import html
import io
import math
import os
from pathlib import Path

from ..common.errors import CompressError
from ..common.fileio import atomic_path, write_json
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


# --------------------------------------------------------------------------- plot
def _plot_rows(report: dict) -> dict[str, list[dict]]:
    """Per runtime, the rows at batch 1 (or the runtime's smallest batch) and the smallest thread count."""
    by_rt: dict[str, list[dict]] = {}
    for r in report.get("rows") or []:
        if r.get("latency_ms_p50") is not None:
            by_rt.setdefault(r["runtime"], []).append(r)
    out = {}
    for rt, rows in by_rt.items():
        batch = min(r["batch"] for r in rows)
        threads = min((r["threads"] for r in rows if r["threads"] is not None), default=None)
        out[rt] = [r for r in rows if r["batch"] == batch and r["threads"] == threads]
    return out


def keep_label(m: dict) -> str:
    """The keep column: ``F0.52`` (FLOPs ratio) for a model pruned to a FLOPs budget, else its keep ratio."""
    if m.get("keep_flops") is not None:
        return f"F{m['keep_flops']:.2f}"
    return _f(m.get("keep"), "g")


def _point_label(r: dict) -> str:
    if r.get("keep") is None:
        return str(r["model"])
    return "orig" if r["keep"] == 1 and not r.get("parent") else keep_label(r)


def plot_pareto(report: dict) -> bytes:
    """PNG bytes: accuracy (%) vs p50 latency (ms) per runtime; latency ratio vs FLOPs ratio beside it."""
    # optional heavy: only the plot needs matplotlib (the object API, no pyplot state, no display)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.6))
    FigureCanvasAgg(fig)
    a1, a2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    groups = _plot_rows(report)
    markers = "osD^vP*X"
    batches = sorted({rows[0]["batch"] for rows in groups.values() if rows})
    for i, (rt, rows) in enumerate(sorted(groups.items())):
        pts = sorted((r for r in rows if r["accuracy"] is not None), key=lambda r: -(r["keep"] or 0))
        label = runtime_label(rt)
        if pts:
            x = [r["latency_ms_p50"] for r in pts]
            y = [r["accuracy"] * 100 for r in pts]
            line, = a1.plot(x, y, marker=markers[i % len(markers)], label=label)
            for r, xi, yi in zip(pts, x, y):
                a1.annotate(_point_label(r), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8,
                            color=line.get_color())
        ratio = sorted((r for r in rows if r["latency_ratio"] is not None and r["flops_ratio"] is not None),
                       key=lambda r: r["flops_ratio"])
        if ratio:
            a2.plot([r["flops_ratio"] for r in ratio], [r["latency_ratio"] for r in ratio],
                    marker=markers[i % len(markers)], label=label)
    batch_txt = "batch " + ", ".join(str(b) for b in batches) if batches else "no latency measured"
    a1.set_xlabel("p50 latency (ms)")
    a1.set_ylabel("test accuracy (%)")
    a1.set_title(f"accuracy vs latency ({batch_txt}; labels: keep ratio)", fontsize=10)
    a1.grid(alpha=0.3)
    a1.margins(x=0.12, y=0.08)
    if not groups:
        a1.text(0.5, 0.5, "no latency measured", ha="center", va="center", transform=a1.transAxes)
    if a1.get_legend_handles_labels()[0]:
        a1.legend(fontsize=8)
    a2.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="ideal (latency ∝ FLOPs)")
    a2.set_xlim(0, 1.05)
    a2.set_ylim(0, max([1.05] + [r["latency_ratio"] * 1.05 for rows in groups.values() for r in rows
                                 if r["latency_ratio"] is not None]))
    a2.set_xlabel("FLOPs ratio (model / original)")
    a2.set_ylabel("latency ratio (p50 model / original)")
    a2.set_title("latency vs FLOPs removed", fontsize=10)
    a2.grid(alpha=0.3)
    a2.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


# --------------------------------------------------------------------------- markdown & html
def _machine_lines(machine: dict) -> list[tuple[str, str]]:
    if not machine:
        return []
    versions = machine.get("versions") or {}
    lines = [("CPU", str(machine.get("cpu", "?"))),
             ("cores", f"{machine.get('logical_cores', '?')} logical, {machine.get('usable_cores', '?')} usable"),
             ("threads used", str(machine.get("threads", "?"))),
             ("OS", str(machine.get("os", "?"))),
             ("Python", str(machine.get("python", "?")))]
    if machine.get("cpu_flags"):
        lines.append(("CPU features", " ".join(machine["cpu_flags"])))
    if "cpu_int8_dot" in machine:
        lines.append(("8-bit dot product", str(machine["cpu_int8_dot"] or "none (INT8 is often slower than FP32)")))
    lines += [(name, str(v)) for name, v in versions.items() if v is not None]
    return lines


def _files(report: dict) -> list[tuple[str, str, str]]:
    out = []
    for m in report.get("models") or []:
        for f, size in (m.get("file_sizes") or {}).items():
            out.append((m["name"], f, _si(size, "B")))
    return out


def _removed(report: dict) -> list[tuple[str, str]]:
    """(model, the units it lost, named: ``attn at depth 3``, block paths) for every pruned model."""
    return [(m["name"], ", ".join(map(str, m["removed"]))) for m in report.get("models") or [] if m.get("removed")]


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict) -> str:
    table = render_table(report)
    lines = ["# compress report", "", f"**{report.get('headline')}**", ""]
    if report.get("baseline"):
        lines += [f"Baseline (marked *): `{report['baseline']}`.", ""]
    lines += ["## Results", ""]
    if table:
        cols = list(table[0])
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "|".join("---" if c in ("model", "runtime") else "---:" for c in cols) + "|")
        for row in table:
            lines.append("| " + " | ".join(_md_escape(row[c]) for c in cols) + " |")
    lines += ["", "![accuracy vs latency](pareto.png)", ""]
    removed = _removed(report)
    if removed:
        lines += ["## Removed units", "", "| model | removed |", "|---|---|"]
        lines += [f"| {_md_escape(a)} | {_md_escape(b)} |" for a, b in removed]
        lines.append("")
    files = _files(report)
    if files:
        lines += ["## Files", "", "| model | file | size |", "|---|---|---:|"]
        lines += [f"| {_md_escape(a)} | {_md_escape(b)} | {c} |" for a, b, c in files]
        lines.append("")
    machine = _machine_lines(report.get("machine") or {})
    if machine:
        lines += ["## Machine and versions", "", "| | |", "|---|---|"]
        lines += [f"| {_md_escape(k)} | {_md_escape(v)} |" for k, v in machine]
        lines.append("")
    lines += ["## Notes", ""] + [f"- {n}" for n in report.get("notes") or []]
    lines += ["", f"_Generated {report.get('created')} ({report.get('format')})._", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:3px 8px}th{background:#f2f2f2}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.base td{background:#fbf7e6}.headline{font-size:1.2em;font-weight:600}img{max-width:100%}
"""


def render_html(report: dict, png: bytes | None = None) -> str:
    """A self-contained page: table, plot (embedded as a base64 data URI), machine, notes."""
    e = html.escape
    table = render_table(report)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>compress report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>compress report</h1>", f'<p class="headline">{e(str(report.get("headline")))}</p>']
    if report.get("baseline"):
        parts.append(f"<p>Baseline (marked *): <code>{e(report['baseline'])}</code>.</p>")
    if table:
        cols = list(table[0])
        parts.append("<table><thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr></thead><tbody>")
        for row in table:
            cls = ' class="base"' if row["model"].endswith(" *") else ""
            cells = "".join(f'<td{"" if c in ("model", "runtime") else " class=n"}>{e(row[c])}</td>' for c in cols)
            parts.append(f"<tr{cls}>{cells}</tr>")
        parts.append("</tbody></table>")
    if png:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<p><img alt="accuracy vs latency" src="data:image/png;base64,{data}"></p>')
    removed = _removed(report)
    if removed:
        parts.append("<h2>Removed units</h2><table><tr><th>model</th><th>removed</th></tr>")
        parts += [f"<tr><td>{e(a)}</td><td>{e(b)}</td></tr>" for a, b in removed]
        parts.append("</table>")
    files = _files(report)
    if files:
        parts.append("<h2>Files</h2><table><tr><th>model</th><th>file</th><th>size</th></tr>")
        parts += [f"<tr><td>{e(a)}</td><td>{e(b)}</td><td class=n>{e(c)}</td></tr>" for a, b, c in files]
        parts.append("</table>")
    machine = _machine_lines(report.get("machine") or {})
    if machine:
        parts.append("<h2>Machine and versions</h2><table>")
        parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in machine]
        parts.append("</table>")
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in report.get("notes") or []) + "</ul>")
    parts.append(f"<p><small>Generated {e(str(report.get('created')))} ({e(str(report.get('format')))}).</small></p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(report: dict, out_dir) -> dict[str, Path]:
    """Write report.json, report.md, pareto.png and report.html into ``out_dir``, each atomically."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CompressError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    png = plot_pareto(report)
    paths = {"json": out / "report.json", "md": out / "report.md", "png": out / "pareto.png",
             "html": out / "report.html"}
    write_json(paths["json"], _clean(report))
    with atomic_path(paths["png"]) as tmp:
        tmp.write_bytes(png)
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(render_markdown(report), encoding="utf-8")
    with atomic_path(paths["html"]) as tmp:
        tmp.write_text(render_html(report, png), encoding="utf-8")
    return paths
