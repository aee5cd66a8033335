"""Latency measurement on real runtimes: Paddle Inference and ONNX Runtime on tiny exported models."""
import json
import os

import pytest

from compress.common.errors import CompressError
from compress.measure.latency import LatencyTarget, group_by_label, machine_info, measure_latency, percentiles_ms

SHAPE = (1, 16, 16)
STAT_KEYS = ("latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_mean")


def test_measure_latency_alternates_and_reports_percentiles(exports):
    big, small = exports["big"][0], exports["small"][0]
    targets = [("big", "paddle", big), ("small", "paddle", small),
               ("big", "onnxruntime", big), ("small", "onnxruntime", small)]
    schedule = []
    recs = measure_latency(targets, batch_sizes=(1, 4), threads=1, warmup=10, min_runs=15, max_runs=20,
                           max_seconds=5.0, burst=3,
                           on_run=lambda label, batch, it: schedule.append((label, batch, it)))
    assert len(recs) == len(targets) * 2
    for r in recs:
        assert r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p99"]
        assert r["latency_ms_min"] <= r["latency_ms_p50"] <= r["latency_ms_max"]
        assert all(r[k] > 0 for k in STAT_KEYS)
        assert 15 <= r["runs"] <= 20
        assert r["threads"] == 1 and r["warmup"] == 10 and r["alternated_with"] == 4
    assert {(r["label"], r["runtime"], r["batch"]) for r in recs} == {
        (t[0], t[1], b) for t in targets for b in (1, 4)}
    assert all(r["onednn"] is True for r in recs if r["runtime"] == "paddle")

    # round-robin in bursts: within each batch size, turns of `burst` consecutive timed runs of one
    # target (the last turn may be shorter, to stop at max_runs), targets in the same order every round
    labels = [t[0] for t in targets]
    for batch in (1, 4):
        seq = [(label, it) for label, b, it in schedule if b == batch]
        assert len(seq) == 20 * len(targets)
        turns = []
        for label, it in seq:
            if turns and turns[-1][0] == label and len(turns[-1][1]) < 3 and it == turns[-1][1][-1] + 1:
                turns[-1][1].append(it)
            else:
                turns.append((label, [it]))
        assert [t[0] for t in turns] == labels * (len(turns) // len(labels))
        assert [len(t[1]) for t in turns] == [3] * (6 * len(labels)) + [2] * len(labels)
    # batch sizes are measured one after the other
    assert [b for _, b, _ in schedule] == sorted(b for _, b, _ in schedule)


def test_stopping_rules(exports):
    d = exports["small"][0]
    t = [("m", "onnxruntime", d)]
    (r,) = measure_latency(t, batch_sizes=(1,), min_runs=7, max_runs=None, max_seconds=None)
    assert r["runs"] == 7 and r["stopped_by"] == "min_runs"
    (r,) = measure_latency(t, batch_sizes=(1,), min_runs=5, max_runs=12, max_seconds=None)
    assert r["runs"] == 12 and r["stopped_by"] == "max_runs"
    (r,) = measure_latency(t, batch_sizes=(1,), min_runs=5, max_runs=None, max_seconds=0.2)
    assert r["runs"] >= 5 and r["stopped_by"] == "time"
    # min_runs wins over an exhausted budget
    (r,) = measure_latency(t, batch_sizes=(1,), min_runs=9, max_runs=None, max_seconds=0.0)
    assert r["runs"] == 9


def test_measure_latency_options_and_errors(exports):
    d = exports["small"][0]
    recs = measure_latency([LatencyTarget("off", "paddle", d, {"onednn": False}), ("on", "paddle", d),
                            ("int8-like", "onnxruntime", d / "model.onnx")],
                           batch_sizes=(2,), min_runs=3, max_runs=3, input_shape=SHAPE)
    assert [r.get("onednn") for r in recs] == [False, True, None]
    with pytest.raises(CompressError, match="warm-up"):
        measure_latency([("m", "onnxruntime", d)], warmup=2)
    with pytest.raises(CompressError, match="distinct"):
        measure_latency([("m", "onnxruntime", d), ("m", "onnxruntime", d)])
    with pytest.raises(CompressError, match="no targets"):
        measure_latency([])
    with pytest.raises(CompressError, match="batch sizes"):
        measure_latency([("m", "onnxruntime", d)], batch_sizes=(0,))
    with pytest.raises(CompressError, match="label, runtime, export_dir"):
        measure_latency([("m", "onnxruntime")])


def test_percentiles_ms():
    p = percentiles_ms([i * 1_000_000 for i in range(1, 101)])  # 1..100 ms
    assert p["latency_ms_p50"] == pytest.approx(50.5)
    assert p["latency_ms_p90"] == pytest.approx(90.1)
    assert p["latency_ms_p99"] == pytest.approx(99.01)
    assert p["latency_ms_mean"] == pytest.approx(50.5)


def test_machine_info():
    info = machine_info(threads=2)
    assert info["threads"] == 2 and info["logical_cores"] >= 1 and info["cpu"]
    for lib in ("paddlepaddle", "onnxruntime", "paddle2onnx", "onnx", "numpy"):
        assert info["versions"][lib], lib
    json.dumps(info)


def test_measured_latency_feeds_the_report(exports, tmp_path):
    """End to end: measure two models, group by label, build and write the report."""
    from compress.measure.reporting import build_report
    from compress.measure.rendering import write_report

    big, small = exports["big"][0], exports["small"][0]
    recs = measure_latency([("orig", "onnxruntime", big), ("keep0.5", "onnxruntime", small),
                            ("orig", "paddle", big), ("keep0.5", "paddle", small)],
                           batch_sizes=(1,), min_runs=10, max_runs=10)
    lat = group_by_label(recs)
    entries = [
        {"name": "orig", "path": str(big), "keep": 1.0, "parent": None, "accuracy": 0.95, "params": 20000,
         "flops": 40000, "file_sizes": {"model.onnx": os.path.getsize(big / "model.onnx")}, "blocks": 4,
         "runtimes": lat["orig"]},
        {"name": "keep0.5", "path": str(small), "keep": 0.5, "parent": "orig", "accuracy": 0.93, "params": 6000,
         "flops": 10000, "file_sizes": {"model.onnx": os.path.getsize(small / "model.onnx")}, "blocks": 2,
         "runtimes": lat["keep0.5"]},
    ]
    report = build_report(entries, machine_info(threads=1))
    assert len(report["rows"]) == 4
    for row in report["rows"]:
        if row["model"] == "orig":
            assert row["speedup"] == pytest.approx(1.0)
        else:
            assert row["speedup"] > 0 and row["flops_ratio"] == pytest.approx(0.25)
    assert report["settings"]["alternation"] is True and report["settings"]["warmup"] == [10]
    paths = write_report(report, tmp_path / "rep")
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())


def test_progress_is_advanced_once_per_iteration(exports):
    from compress.common.progress import Progress

    class Recorder(Progress):
        def __init__(self):
            self.tasks, self.logs = [], []

        def task(self, description, total):
            import contextlib

            rec = {"description": description, "total": total, "n": 0, "fields": {}}
            self.tasks.append(rec)

            def advance(n=1, **fields):
                rec["n"] += n
                rec["fields"].update(fields)

            return contextlib.nullcontext(advance)

        def log(self, message):
            self.logs.append(message)

    d = exports["small"][0]
    p = Recorder()
    recs = measure_latency([("keep 0.5", "onnxruntime", d), ("n", "paddle", d)], batch_sizes=(1, 2),
                           min_runs=23, max_runs=23, progress=p)
    assert [t["n"] for t in p.tasks] == [23, 23] and [r["runs"] for r in recs] == [23] * 4
    assert set(p.tasks[0]["fields"]) == {"keep 0.5 ms", "n ms"}
    assert any("loading" in m for m in p.logs)
