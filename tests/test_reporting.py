"""The report: ratios against the original, the four files, the headline."""
import base64
import json
import math
import re

import numpy as np
import pytest

from compress.common.errors import CompressError
from compress.measure.reporting import ROW_KEYS, build_report
from compress.measure.summary import TABLE_COLUMNS, headline, render_table
from compress.measure.rendering import write_report

MACHINE = {"cpu": "Test CPU", "logical_cores": 2, "usable_cores": 2, "threads": 1, "os": "Linux", "python": "3.11",
           "versions": {"paddlepaddle": "3.3.1", "onnxruntime": "1.32.0", "paddle2onnx": "2.1.0",
                        "onnx": "1.17.0", "numpy": "1.26.4"}}


def _rec(runtime, batch, p50, runs=100):
    return {"runtime": runtime, "batch": batch, "threads": 1, "latency_ms_p50": p50, "latency_ms_p90": p50 * 1.1,
            "latency_ms_p99": p50 * 1.3, "latency_ms_mean": p50 * 1.05, "runs": runs, "warmup": 10,
            "alternated_with": 3}


def _entry(name, keep, parent, acc, flops, params, lat, blocks):
    return {"name": name, "path": f"/m/{name}.pdparams", "keep": keep, "parent": parent, "accuracy": acc,
            "params": params, "flops": flops, "blocks": blocks,
            "file_sizes": {"model.onnx": params * 4 + 1000, "paddle/model.pdiparams": params * 4},
            "runtimes": [_rec(rt, b, v) for (rt, b), v in lat.items()]}


@pytest.fixture
def entries():
    return [
        _entry("keep0.75", 0.75, "original", 0.975, 750_000, 75_000,
               {("paddle", 1): 8.0, ("onnxruntime", 1): 6.0, ("paddle", 32): 150.0, ("onnxruntime", 32): 120.0}, 6),
        _entry("original", 1.0, None, 0.980, 1_000_000, 100_000,
               {("paddle", 1): 10.0, ("onnxruntime", 1): 8.0, ("paddle", 32): 200.0, ("onnxruntime", 32): 160.0}, 8),
        _entry("keep0.5", 0.5, "original", 0.971, 500_000, 50_000,
               {("paddle", 1): 6.25, ("onnxruntime", 1): 4.0, ("paddle", 32): 100.0, ("onnxruntime", 32): 64.0}, 4),
    ]


def _row(report, model, runtime, batch):
    (r,) = [r for r in report["rows"] if r["model"] == model and r["runtime"] == runtime and r["batch"] == batch]
    return r


def test_build_report_ratios(entries):
    rep = build_report(entries, MACHINE)
    assert rep["baseline"] == "original"
    assert len(rep["rows"]) == 3 * 4
    r = _row(rep, "keep0.5", "onnxruntime", 1)
    assert r["speedup"] == pytest.approx(2.0)
    assert r["latency_ratio"] == pytest.approx(0.5)
    assert r["flops_ratio"] == pytest.approx(0.5)
    assert r["ideal_speedup"] == pytest.approx(2.0)
    assert r["params_ratio"] == pytest.approx(0.5)
    assert r["accuracy_delta_points"] == pytest.approx(-0.9)
    r = _row(rep, "keep0.5", "paddle", 1)
    assert r["speedup"] == pytest.approx(1.6) and r["latency_ratio"] == pytest.approx(0.625)
    r = _row(rep, "keep0.75", "paddle", 32)
    assert r["speedup"] == pytest.approx(200 / 150) and r["flops_ratio"] == pytest.approx(0.75)
    for rt in ("paddle", "onnxruntime"):
        for b in (1, 32):
            assert _row(rep, "original", rt, b)["speedup"] == pytest.approx(1.0)
    # the per-model runtimes records carry the ratios too; the input is not modified
    (m,) = [m for m in rep["models"] if m["name"] == "keep0.5"]
    assert m["is_baseline"] is False and m["flops_ratio"] == pytest.approx(0.5)
    assert sorted(r["speedup"] for r in m["runtimes"] if r["batch"] == 1) == pytest.approx([1.6, 2.0])
    assert "speedup" not in entries[2]["runtimes"][0]


def test_rows_have_the_documented_keys(entries):
    rep = build_report(entries, MACHINE)
    for r in rep["rows"]:
        assert set(ROW_KEYS) <= set(r)
        for k in ("accuracy", "latency_ms_p50", "latency_ms_p90", "flops", "params", "runtime", "keep", "batch",
                  "speedup", "flops_ratio", "model"):
            assert k in r


def test_pareto_flags(entries):
    entries[0]["runtimes"][0]["latency_ms_p50"] = 11.0  # keep0.75 on paddle b1: slower and less accurate
    rep = build_report(entries, MACHINE)
    assert _row(rep, "keep0.75", "paddle", 1)["pareto"] is False
    assert _row(rep, "original", "paddle", 1)["pareto"] is True
    assert _row(rep, "keep0.5", "paddle", 1)["pareto"] is True


def test_baseline_selection(entries):
    rep = build_report(entries, MACHINE, baseline_name="keep0.75")
    assert rep["baseline"] == "keep0.75"
    assert _row(rep, "keep0.5", "onnxruntime", 1)["speedup"] == pytest.approx(1.5)
    with pytest.raises(CompressError, match="no model named"):
        build_report(entries, MACHINE, baseline_name="nope")
    # no original: the report still builds, without ratios
    rep = build_report(entries[2:], MACHINE)
    assert rep["baseline"] is None and all(r["speedup"] is None for r in rep["rows"])
    assert "no original" in headline(rep)
    twin = dict(entries[1], name="original2")
    with pytest.raises(CompressError, match="several"):
        build_report(entries + [twin], MACHINE)
    with pytest.raises(CompressError, match="named 'original'"):
        build_report(entries + [dict(entries[1])], MACHINE)


def test_missing_baseline_measurement_gives_none(entries):
    entries[2]["runtimes"].append(_rec("onnxruntime-int8", 1, 3.0))
    entries[2]["runtimes"][-1]["accuracy"] = 0.96
    rep = build_report(entries, MACHINE)
    r = _row(rep, "keep0.5", "onnxruntime-int8", 1)
    assert r["speedup"] is None and r["latency_ratio"] is None
    assert r["accuracy"] == 0.96 and r["accuracy_delta_points"] == pytest.approx(-2.0)


def test_nan_becomes_null(entries, tmp_path):
    entries[2]["accuracy"] = float("nan")
    rep = build_report(entries, MACHINE)
    assert _row(rep, "keep0.5", "paddle", 1)["accuracy"] is None
    write_report(rep, tmp_path)
    text = (tmp_path / "report.json").read_text()
    assert "NaN" not in text
    json.loads(text)


def test_headline(entries):
    rep = build_report(entries, MACHINE)
    assert rep["headline"] == "keep 0.5 (4 of 8 blocks): 2.0x faster on ONNX Runtime (batch 1, 1 thread, the fastest of 2 runtimes), -0.9 points"
    assert headline(rep) == rep["headline"]
    # only the original: nothing to compare
    assert "no pruned model" in headline(build_report(entries[1:2], MACHINE))
    # batch 1 missing: the smallest measured batch, said so
    only32 = [dict(e, runtimes=[r for r in e["runtimes"] if r["batch"] == 32]) for e in entries]
    assert build_report(only32, MACHINE)["headline"] == "keep 0.5 (4 of 8 blocks): 2.5x faster on ONNX Runtime (batch 32, 1 thread, the fastest of 2 runtimes), -0.9 points"
    # slower is said as slower (the least slow runtime is named)
    for r in entries[2]["runtimes"]:
        r["latency_ms_p50"] *= 10
    rep = build_report(entries, MACHINE)
    assert rep["headline"] == "keep 0.5 (4 of 8 blocks): 5.0x slower on ONNX Runtime (batch 1, 1 thread, the fastest of 2 runtimes), -0.9 points"


def test_write_report_files(entries, tmp_path):
    rep = build_report(entries, MACHINE, notes=["a note from the caller"])
    paths = write_report(rep, tmp_path / "out")
    assert {p.name for p in paths.values()} == {"report.json", "report.md", "pareto.png", "report.html"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pareto.png", "report.html", "report.json",
                                                                    "report.md"]  # no temp files left
    data = json.loads(paths["json"].read_text())
    assert data["format"] == "compress-report/1" and len(data["rows"]) == 12
    assert data["machine"]["cpu"] == "Test CPU"
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    md = paths["md"].read_text()
    assert "| model |" in md and "keep0.5" in md and "pareto.png" in md
    assert "alternation" in md and "warm-up" in md and "1 thread" in md
    assert "Test CPU" in md and "onnxruntime" in md and "a note from the caller" in md

    page = paths["html"].read_text()
    m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert m and base64.b64decode(m.group(1)) == png
    assert "<table>" in page and "Test CPU" in page and rep["headline"] in page
    assert "src=\"http" not in page and "<link" not in page  # self-contained


def test_write_report_without_latency(entries, tmp_path):
    for e in entries:
        e["runtimes"] = []
    rep = build_report(entries, MACHINE)
    assert rep["rows"] == [] and "No latency was measured." in rep["notes"]
    assert "fewer FLOPs" in rep["headline"]
    write_report(rep, tmp_path)
    assert (tmp_path / "pareto.png").stat().st_size > 0
    assert len(render_table(rep)) == 3


def test_render_table(entries):
    rep = build_report(entries, MACHINE)
    table = render_table(rep)
    assert len(table) == 12
    assert all(tuple(row) == TABLE_COLUMNS for row in table)
    assert all(isinstance(v, str) for row in table for v in row.values())
    (row,) = [r for r in table if r["model"] == "keep0.5" and r["runtime"] == "ONNX Runtime" and r["batch"] == "1"]
    assert row["speedup"] == "2.00x" and row["accuracy %"] == "97.10" and row["Δ points"] == "-0.90"
    assert row["FLOPs ratio"] == "0.500" and row["p50 ms"] == "4.00"
    assert sum(r["model"].endswith(" *") for r in table) == 4  # the baseline is marked


def test_bad_entries():
    with pytest.raises(CompressError, match="no models"):
        build_report([], MACHINE)
    with pytest.raises(CompressError, match="no name"):
        build_report([{"keep": 1.0}], MACHINE)
    with pytest.raises(CompressError, match="lacks latency_ms_p50"):
        build_report([{"name": "a", "runtimes": [{"runtime": "paddle", "batch": 1}]}], MACHINE)
    rec = _rec("paddle", 1, 1.0)
    with pytest.raises(CompressError, match="distinct runtime names"):
        build_report([{"name": "a", "runtimes": [rec, dict(rec)]}], MACHINE)


def test_write_report_refuses_a_file(entries, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(CompressError, match="not a directory"):
        write_report(build_report(entries, MACHINE), tmp_path / "f")


def test_numbers_are_finite_floats(entries):
    rep = build_report(entries, MACHINE)
    for r in rep["rows"]:
        for k in ("speedup", "latency_ratio", "flops_ratio"):
            assert r[k] is None or math.isfinite(r[k])


def test_accuracies_carry_intervals_image_counts_and_noise_flags(entries):
    n = 1000
    right = {"original": 980, "keep0.75": 975, "keep0.5": 940}
    for e in entries:
        c = np.zeros(n, bool)
        c[:right[e["name"]]] = True
        e["correct"], e["accuracy"] = c, right[e["name"]] / n
    rep = build_report(entries, MACHINE)
    assert all("correct" not in m for m in rep["models"])          # not written into the report ...
    assert all(isinstance(e["correct"], np.ndarray) for e in entries)  # ... and not taken out of the caller's entries
    r = _row(rep, "keep0.75", "onnxruntime", 1)
    assert r["test_images"] == n and r["accuracy_low"] < 0.975 < r["accuracy_high"]
    assert r["accuracy_delta_images"] == -5 and r["accuracy_inside_noise"] is True
    r = _row(rep, "keep0.5", "onnxruntime", 1)
    assert r["accuracy_delta_images"] == -40 and r["accuracy_inside_noise"] is False
    (row,) = [t for t in render_table(rep) if t["model"] == "keep0.75" and t["runtime"] == "ONNX Runtime"
              and t["batch"] == "1"]
    assert row["Δ images"] == "-5 of 1000 (noise)" and row["keep"] == "0.75 (6 of 8 blocks)"
    assert rep["headline"].endswith("-0.5 points (-5 of 1000 test images, inside the noise)")
    assert any("95 % Wilson" in note for note in rep["notes"])


def test_a_busy_machine_and_spread_latencies_are_flagged(entries):
    entries[0]["runtimes"][0]["latency_ms_p90"] = entries[0]["runtimes"][0]["latency_ms_p50"] * 2
    rep = build_report(entries, MACHINE, settings={"load_average": [0.2, 3.5]})
    warnings = [n for n in rep["notes"] if n.startswith("WARNING")]
    assert len(warnings) == 2 and "load average 3.5 on 2" in warnings[0] and "keep0.75 on Paddle" in warnings[1]
    assert not any(n.startswith("WARNING") for n in build_report([dict(e) for e in entries[1:]], MACHINE,
                                                                 settings={"load_average": [0.2, 0.4]})["notes"])
