"""`compress report`, `sweep` and `demo`: real exports, real runtimes, tiny models, fast timing settings."""
import json

import pytest

from compress.workflows.sweep import demo, parse_keeps
from compress.common.errors import CompressError
from helpers import invoke, one_line_error

FAST = ["--runs", 5, "--warmup", 10, "--seconds", 0, "--batch", "1,4"]


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    d = tmp_path_factory.mktemp("family")
    base = d / "tiny.pdparams"
    res = invoke("train", "--arch", "tiny_models:TinyCNN", "--input-shape", "1,8,8", "--epochs", 3, "--lr", 0.01,
                 "--drop-path-rate", 0.2, "--out", base)
    assert res.exit_code == 0, res.output
    pruned = d / "tiny.keep0.5.pdparams"
    assert invoke("prune", base, "--keep", 0.5, "--epochs", 1, "--out", pruned).exit_code == 0
    return base, pruned


def test_report_writes_four_files_with_documented_rows(family, tmp_path):
    base, pruned = family
    out = tmp_path / "rep"
    res = invoke("report", base, pruned, "--out", out, *FAST, "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    for f in ("report.json", "report.md", "report.html", "pareto.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0
    assert json.loads((out / "report.json").read_text())["rows"] == rep["rows"]
    assert len(rep["rows"]) == 2 * 2 * 2                     # models x runtimes x batch sizes
    for row in rep["rows"]:
        for key in ("accuracy", "latency_ms_p50", "latency_ms_p90", "flops", "params", "runtime", "keep"):
            assert row[key] is not None, key
        assert row["latency_ms_p50"] <= row["latency_ms_p90"]
    keeps = {r["model"]: r["keep"] for r in rep["rows"]}
    assert keeps == {"tiny": 1.0, "tiny.keep0.5": 0.5}
    small = [r for r in rep["rows"] if r["model"] == "tiny.keep0.5"]
    assert all(r["flops_ratio"] < 0.8 and r["speedup"] is not None for r in small)
    assert rep["machine"]["logical_cores"] >= 1 and rep["machine"]["versions"]["paddlepaddle"]
    assert "keep 0.5" in rep["headline"]
    assert "data:image/png;base64," in (out / "report.html").read_text()
    # human output: a table and the headline
    res = invoke("report", base, pruned, "--out", out, *FAST)
    assert res.exit_code == 0 and "ONNX Runtime" in res.stdout and "Paddle Inference" in res.stdout


def test_report_times_a_given_export_where_it_is(family, tmp_path):
    base, pruned = family
    exp = tmp_path / "exp"
    assert invoke("export", pruned, "--out", exp).exit_code == 0
    before = {f: f.stat().st_mtime_ns for f in exp.rglob("*") if f.is_file()}
    res = invoke("report", base, exp, "--out", tmp_path / "rep", *FAST, "--json")
    assert res.exit_code == 0, res.output
    assert f"{exp}: a verified export of {pruned}, reused" in res.stderr
    rep = json.loads(res.stdout)
    assert {r["model"] for r in rep["rows"]} == {"tiny", "tiny.keep0.5"}
    assert sorted(p.name for p in (tmp_path / "rep" / "exports").iterdir()) == ["tiny"]   # not exported again
    assert {f: f.stat().st_mtime_ns for f in exp.rglob("*") if f.is_file()} == before    # nor touched
    # an export whose files no longer match its export.json is refused, not timed
    (exp / "model.onnx").write_bytes(b"not the model")
    err = one_line_error(invoke("report", base, exp, "--out", tmp_path / "rep2", *FAST))
    assert "not a verified export" in err and not (tmp_path / "rep2").exists()


def test_report_bad_input(tmp_path):
    assert "no such file" in one_line_error(invoke("report", tmp_path / "none.pdparams", "--out", tmp_path / "r"))
    assert "--batch" in one_line_error(invoke("report", tmp_path / "none.pdparams", "--batch", "0"))


def test_sweep_is_resumable_and_survives_a_failed_point(family, tmp_path):
    base, _ = family
    out = tmp_path / "sw"
    args = ["sweep", base, "--keep", "1.0,0.5,0.25", "--criterion", "angular", "--epochs", 0, "--out", out, *FAST]
    res = invoke(*args, "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert set(rep["failed"]) == {"0.25"} and "contiguous" in rep["failed"]["0.25"]
    assert {r["model"] for r in rep["rows"]} == {"tiny", "tiny.keep0.5"}
    state = json.loads((out / "sweep.json").read_text())
    assert state["points"]["0.5"]["status"] == "done" and state["points"]["0.25"]["status"] == "failed"
    model = out / "models" / "tiny.keep0.5.pdparams"
    stamp = model.stat().st_mtime_ns
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert "keep 0.5: done earlier, skipped" in res.stderr
    assert model.stat().st_mtime_ns == stamp
    assert "keep 0.25 failed" in res.stdout
    # another sweep's settings in the same directory are refused
    assert "other settings" in one_line_error(invoke("sweep", base, "--keep", "0.5", "--epochs", 1, "--out", out))


def test_parse_keeps():
    assert parse_keeps("0.5,1.0,0.75,0.5") == [1.0, 0.75, 0.5]
    with pytest.raises(CompressError):
        parse_keeps("0,0.5")
    with pytest.raises(CompressError):
        parse_keeps("a")


def test_demo_on_the_shipped_cnn(tmp_path):
    rep = demo(tmp_path / "demo", sample="resnet_tiny", keeps=(1.0, 0.5), heal_epochs=1,
               report_options={"min_runs": 5, "max_seconds": 0, "batch_sizes": (1,)})
    assert rep["baseline"] == "resnet_tiny" and "keep 0.5" in rep["headline"]
    assert all((tmp_path / "demo" / f).is_file() for f in ("report.json", "report.md", "report.html", "pareto.png"))
    with pytest.raises(CompressError, match="no sample model"):
        demo(tmp_path / "x", sample="nope")


@pytest.mark.slow
def test_demo_command_end_to_end(tmp_path):
    res = invoke("demo", "--out", tmp_path / "demo")
    assert res.exit_code == 0, res.output
    assert "keep 0.5 (4 of 8 blocks):" in res.stdout and "report.html" in res.stdout


@pytest.mark.slow  # over 25 s on 2 cores; the full suite runs it
def test_report_int8_rows_and_tolerance_flags(trained_resnet, tmp_path):
    """With --int8-force every export keeps an INT8 model per runtime: the report times it next to FP32 and
    names the CPU's 8-bit dot-product support; the tolerance flags reach each export."""
    base, pruned = trained_resnet, tmp_path / "resnet_tiny.keep0.5.pdparams"
    assert invoke("prune", base, "--keep", 0.5, "--epochs", 0, "--out", pruned).exit_code == 0
    out = tmp_path / "rep"
    res = invoke("report", base, pruned, "--out", out, *FAST, "--int8-force", "--int8-schemes", "qdq,slim-abs-max",
                 "--int8-seconds", "0.5", "--rtol", "0.001", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert {r["runtime"] for r in rep["rows"]} == {"paddle", "onnxruntime", "paddle-int8", "onnxruntime-int8"}
    for r in rep["rows"]:
        assert r["accuracy"] is not None and r["latency_ms_p50"] > 0
    assert "cpu_int8_dot" in rep["machine"] and "8-bit dot product" in (out / "report.md").read_text()
    assert "ONNX Runtime (int8)" in (out / "report.md").read_text()
    for name in ("resnet_tiny", "resnet_tiny.keep0.5"):
        info = json.loads((out / "exports" / name / "export.json").read_text())
        assert info["options"]["tolerance"]["rtol"] == 0.001 and info["options"]["int8"] == "force"
