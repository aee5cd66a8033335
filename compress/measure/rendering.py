"""The report's four files from a built report (:func:`compress.measure.reporting.build_report`).

report.md and report.html are two renderings of one walk over the report (:func:`report_sections`): the
headline, the results table, the plot, the removed units, the files, the machine and the notes.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

from ..common.errors import CompressError
from ..common.fileio import atomic_path, write_json
from ..runtimes import runtime_label
from .reporting import _clean
from .summary import _si, keep_label, render_table


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


def _point_label(r: dict) -> str:
    if r.get("keep") is None:
        return str(r["model"])
    return "orig" if r["keep"] == 1 and not r.get("parent") else keep_label(r)


def _plot_front(ax, pts: list[dict], marker: str, label: str) -> None:
    """One runtime's models: every point with its 95 % interval bar; the Pareto front (no other model at least as
    accurate and as fast) joined in latency order; the y-range no tighter than the intervals."""
    x = [r["latency_ms_p50"] for r in pts]
    y = [r["accuracy"] * 100 for r in pts]
    lo = [max(0.0, yi - (r.get("accuracy_low") if r.get("accuracy_low") is not None else r["accuracy"]) * 100)
          for r, yi in zip(pts, y)]
    hi = [max(0.0, (r.get("accuracy_high") if r.get("accuracy_high") is not None else r["accuracy"]) * 100 - yi)
          for r, yi in zip(pts, y)]
    bars = ax.errorbar(x, y, yerr=[lo, hi], fmt=marker, capsize=3, label=label)
    color = bars[0].get_color()
    front = sorted((r for r in pts if r.get("pareto")), key=lambda r: r["latency_ms_p50"])
    if len(front) > 1:
        ax.plot([r["latency_ms_p50"] for r in front], [r["accuracy"] * 100 for r in front], color=color)
    for r, xi, yi in zip(pts, x, y):
        ax.annotate(_point_label(r), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8, color=color)


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
        pts = [r for r in rows if r["accuracy"] is not None]
        label = runtime_label(rt)
        if pts:
            _plot_front(a1, pts, markers[i % len(markers)], label)
        ratio = sorted((r for r in rows if r["latency_ratio"] is not None and r["flops_ratio"] is not None),
                       key=lambda r: r["flops_ratio"])
        if ratio:
            a2.plot([r["flops_ratio"] for r in ratio], [r["latency_ratio"] for r in ratio],
                    marker=markers[i % len(markers)], label=label)
    batch_txt = "batch " + ", ".join(str(b) for b in batches) if batches else "no latency measured"
    a1.set_xlabel("p50 latency (ms)")
    a1.set_ylabel("test accuracy (%)")
    a1.set_title(f"accuracy vs latency ({batch_txt}; line: Pareto front; bars: 95% interval)", fontsize=10)
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
    a2.set_xlabel("MACs kept (FLOPs ratio, model / original)")
    a2.set_ylabel("latency ratio (p50 model / original)")
    a2.set_title("latency vs MACs kept", fontsize=10)
    a2.grid(alpha=0.3)
    a2.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


# --------------------------------------------------------------------------- sections
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


@dataclass
class Section:
    """One part of the report as both renderings show it.

    ``kind``: ``table`` (``columns`` and ``rows``; ``text`` lists the left-aligned columns, ``marked`` says
    which rows are the baseline), ``pairs`` (two-column rows: a name and its value), ``list`` (``rows`` of one
    string each) or ``plot``.
    """

    title: str | None
    kind: str
    rows: list = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    text: tuple[str, ...] = ()
    marked: list[bool] = field(default_factory=list)


def report_sections(report: dict) -> list[Section]:
    """The report's sections in reading order; empty ones are left out (the notes always come)."""
    table = render_table(report)
    cols = list(table[0]) if table else []
    out = [Section("Results", "table", [[row[c] for c in cols] for row in table], cols, ("model", "runtime"),
                   [row["model"].endswith(" *") for row in table]),
           Section(None, "plot")]
    removed = _removed(report)
    if removed:
        out.append(Section("Removed units", "table", [list(r) for r in removed], ["model", "removed"],
                           ("model", "removed")))
    files = _files(report)
    if files:
        out.append(Section("Files", "table", [list(r) for r in files], ["model", "file", "size"], ("model", "file")))
    machine = _machine_lines(report.get("machine") or {})
    if machine:
        out.append(Section("Machine and versions", "pairs", [list(r) for r in machine]))
    out.append(Section("Notes", "list", [str(n) for n in report.get("notes") or []]))
    return out


# --------------------------------------------------------------------------- markdown
def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _md_section(s: Section) -> list[str]:
    if s.kind == "plot":
        return ["", "![accuracy vs latency](pareto.png)", ""]
    lines = [f"## {s.title}", ""]
    if s.kind == "list":
        return lines + [f"- {n}" for n in s.rows]
    if s.kind == "pairs":
        lines += ["| | |", "|---|---|"]
    elif s.rows:
        lines += ["| " + " | ".join(s.columns) + " |",
                  "|" + "|".join("---" if c in s.text else "---:" for c in s.columns) + "|"]
    lines += ["| " + " | ".join(_md_escape(v) for v in row) + " |" for row in s.rows]
    return lines if s.title == "Results" else lines + [""]


def render_markdown(report: dict) -> str:
    lines = ["# compress report", "", f"**{report.get('headline')}**", ""]
    if report.get("baseline"):
        lines += [f"Baseline (marked *): `{report['baseline']}`.", ""]
    for s in report_sections(report):
        lines += _md_section(s)
    lines += ["", f"_Generated {report.get('created')} ({report.get('format')})._", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- html
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:3px 8px;white-space:nowrap}th{background:#f2f2f2}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.base td{background:#fbf7e6}.headline{font-size:1.2em;font-weight:600}img{max-width:100%}
"""


def _html_section(s: Section, png: bytes | None) -> list[str]:
    e = html.escape
    if s.kind == "plot":
        if not png:
            return []
        return [f'<p><img alt="accuracy vs latency" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"></p>']
    if s.kind == "list":
        return [f"<h2>{e(s.title)}</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in s.rows) + "</ul>"]
    parts = [f"<h2>{e(s.title)}</h2>"]
    if s.kind == "pairs":
        return parts + ["<table>"] + [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in s.rows] + ["</table>"]
    if not s.rows:
        return []
    parts.append("<table><thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in s.columns) + "</tr></thead><tbody>")
    for i, row in enumerate(s.rows):
        cls = ' class="base"' if i < len(s.marked) and s.marked[i] else ""
        cells = "".join(f'<td{"" if c in s.text else " class=n"}>{e(v)}</td>' for c, v in zip(s.columns, row))
        parts.append(f"<tr{cls}>{cells}</tr>")
    return parts + ["</tbody></table>"]


def render_html(report: dict, png: bytes | None = None) -> str:
    """A self-contained page: the same sections as report.md, the plot embedded as a base64 data URI."""
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>compress report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>compress report</h1>", f'<p class="headline">{e(str(report.get("headline")))}</p>']
    if report.get("baseline"):
        parts.append(f"<p>Baseline (marked *): <code>{e(report['baseline'])}</code>.</p>")
    for s in report_sections(report):
        parts += _html_section(s, png)
    parts.append(f"<p><small>Generated {e(str(report.get('created')))} ({e(str(report.get('format')))}).</small></p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- files
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
