"""What a report shows of its models at a glance: the table's display strings (:func:`render_table`) and the
one-line headline (:func:`headline`), both read off a built report (:func:`compress.measure.reporting.build_report`)."""
from __future__ import annotations

from ..runtimes import runtime_label


def _row_evidence(holder: dict, m: dict) -> dict:
    """The evidence columns of one row: from its runtime record when that has its own accuracy (INT8)."""
    interval, delta = holder.get("accuracy_interval") or [None, None], holder.get("accuracy_delta") or {}
    return {"test_images": m.get("test_images"), "accuracy_low": interval[0], "accuracy_high": interval[1],
            "accuracy_delta_images": delta.get("net_images"), "accuracy_delta_p": delta.get("p_value"),
            "accuracy_inside_noise": delta.get("inside_noise")}


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
    label = _keep_cell(chosen, base)   # what was kept: ``0.8 (4 of 5 blocks)``
    who = f"keep {label}" if len(candidates) == 1 else f"{chosen['name']} (keep {label})"
    parts = []
    if best is not None:
        # the same rule every run: the largest speed-up at the smallest batch, saying among how many runtimes
        n_rt = len({r["runtime"] for r in rows})
        among = f", the fastest of {n_rt} runtimes" if n_rt > 1 else ""
        threads = f", {best['threads']} thread{'s' if best['threads'] != 1 else ''}" if best.get("threads") else ""
        parts.append(f"{_fmt_speed(best['speedup'])} on {runtime_label(best['runtime'])} "
                     f"(batch {best['batch']}{threads}{among})")
    elif chosen.get("flops_ratio"):
        parts.append(f"{1 / chosen['flops_ratio']:.1f}x fewer FLOPs (latency not measured)")
    delta = best["accuracy_delta_points"] if best is not None else chosen.get("accuracy_delta_points")
    if delta is not None:
        parts.append(f"{delta:+.1f} points" + _noise_words(best if best is not None else _row_evidence(chosen, chosen)))
    return f"{who}: " + (", ".join(parts) if parts else "nothing measured")


def _noise_words(r: dict) -> str:
    """`` (-2 of 360 test images, inside the noise)`` where the paired difference is known."""
    d, n = r.get("accuracy_delta_images"), r.get("test_images")
    if d is None or not n:
        return f" (on {n} test images)" if n else ""
    return f" ({d:+d} of {n} test images{', inside the noise' if r.get('accuracy_inside_noise') else ''})"


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


TABLE_COLUMNS = ("model", "keep", "blocks", "accuracy %", "95% interval", "Δ points", "Δ images", "params", "FLOPs",
                 "FLOPs ratio", "runtime", "batch", "threads", "p50 ms", "p90 ms", "p99 ms", "latency ratio", "speedup",
                 "runs")


def _interval(r: dict) -> str:
    lo, hi = r.get("accuracy_low"), r.get("accuracy_high")
    return "-" if lo is None or hi is None else f"{lo * 100:.1f}-{hi * 100:.1f}"


def _delta_images(r: dict) -> str:
    """``-2 of 360 (noise)``: the net change in right test images against the original, and whether it is
    inside the noise (McNemar p >= 0.05)."""
    d, n = r.get("accuracy_delta_images"), r.get("test_images")
    if d is None:
        return "-"
    return f"{d:+d} of {n}" + (" (noise)" if r.get("accuracy_inside_noise") else "")


def _keep_cell(m: dict, base: dict | None) -> str:
    """The keep column: the ratio and what it kept, ``0.8 (4 of 5 blocks)``."""
    label = keep_label(m)
    if base is not None and m.get("blocks") is not None and base.get("blocks"):
        label += f" ({m['blocks']} of {base['blocks']} blocks)"
    return label


def render_table(report: dict) -> list[dict[str, str]]:
    """Rows of display strings, keyed by ``TABLE_COLUMNS``, one per model x runtime x batch.

    A model without latency records gets one row with "-" latencies.
    """
    out = []
    base = next((m for m in report.get("models") or [] if m.get("is_baseline")), None)
    rows_by_model: dict[str, list[dict]] = {}
    for r in report.get("rows") or []:
        rows_by_model.setdefault(r["model"], []).append(r)
    for m in report.get("models") or []:
        rows = rows_by_model.get(m["name"]) or [{
            "accuracy": m.get("accuracy"), "accuracy_delta_points": m.get("accuracy_delta_points"),
            "runtime": None, "batch": None, "threads": None, **_row_evidence(m, m)}]
        for r in sorted(rows, key=lambda r: (str(r["runtime"]), r["batch"] or 0, r["threads"] or 0)):
            acc = r.get("accuracy")
            out.append({
                "model": m["name"] + (" *" if m.get("is_baseline") else ""),
                "keep": _keep_cell(m, base),
                "blocks": _f(m.get("blocks"), "d"),
                "accuracy %": _f(None if acc is None else acc * 100, ".2f"),
                "95% interval": _interval(r),
                "Δ points": _f(r.get("accuracy_delta_points"), "+.2f"),
                "Δ images": _delta_images(r),
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
