"""`compress export`: real paddle, paddle2onnx and onnxruntime on a tiny model."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from compress_cli.app import app

import compress.export as ex
import compress.export.ort_int8 as ort_int8
import compress.runtimes.onnx as onnx_runtime
from compress.common.errors import EXIT_ACCURACY, EXIT_PARITY
from compress.common.fileio import sha256

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["export", *map(str, args)])


def error_line(res) -> str:
    """The one ``error:`` line a failed command prints (progress lines may precede it on stderr)."""
    lines = res.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr
    return errors[0]


def leftovers(parent: Path) -> list[str]:
    """Hidden temporary directories an aborted export might have left next to --out."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    """One default export (paddle + onnx, dynamic batch) through the CLI with --json."""
    out = tmp_path_factory.mktemp("export") / "out"
    res = run(tiny_model, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    return res, out


def test_json_output_is_export_json(exported):
    res, out = exported
    printed = json.loads(res.stdout)  # nothing but JSON on stdout: paddle2onnx's chatter went elsewhere
    assert printed == json.loads((out / "export.json").read_text())


def test_files_written_and_loadable(exported, tiny_model):
    from compress.data import ModelData
    from compress.model.bundle import load_model

    _, out = exported
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["export.json", "model.onnx", "paddle/model.json", "paddle/model.pdiparams"]
    assert leftovers(out.parent) == []
    bundle = load_model(tiny_model)
    x = ModelData.of_model(bundle).arrays("test", 7)[0]  # a batch size the export never used
    ref = ex.run_dygraph(bundle.model, x)
    sess = ex.onnx_session(out / "model.onnx")
    assert np.abs(ex.run_onnx(sess, x) - ref).max() < 1e-4
    for onednn in (False, True):
        pred = ex.paddle_predictor(out / "paddle/model.json", out / "paddle/model.pdiparams", onednn=onednn)
        assert np.abs(ex.run_paddle_inference(pred, x) - ref).max() < 1e-4


def test_export_json_records_versions_parity_files_and_graphs(exported, tiny_model):
    _, out = exported
    info = json.loads((out / "export.json").read_text())
    assert set(info["versions"]) >= {"paddlepaddle", "paddle2onnx", "onnx", "onnxruntime"}
    assert info["opset"] == ex.DEFAULT_OPSET and info["batch"] == "dynamic"
    assert info["input"]["name"] == "x" and info["input"]["shape"] == [None, 1, 16, 16]
    assert info["output"]["shape"] == [None, 10]
    pre = info["input"]["preprocess"]      # the full recipe the parity images went through
    assert pre["resize"]["rule"] == "exact" and pre["mean"] == [0.5] and pre["input_shape"] == [1, 16, 16]
    par = info["parity"]
    assert set(par["runtimes"]) == {"paddle_inference", "paddle_inference_onednn", "onnxruntime"}
    assert par["tolerance"]["atol"] == 1e-4 and par["tolerance"]["rtol"] == 1e-4
    for fig in par["runtimes"].values():
        assert fig["n_inputs"] == 256 and fig["max_abs_diff"] <= 1e-4 and fig["argmax_agreement"] >= 0.999
        assert fig["passed"] and fig["worst_tolerance_use"] < 1 and fig["top5_agreement"] >= 0.99
    assert info["source"]["sha256"] == sha256(tiny_model)
    for rel, f in info["files"].items():
        assert f["bytes"] == (out / rel).stat().st_size and f["sha256"] == sha256(out / rel)
    g = info["graphs"]
    assert g["paddle"]["param_elements"] > 0 and g["onnx"]["ops"] > 0
    assert g["onnx"]["op_types"]["Conv"] == g["paddle"]["op_types"]["conv2d"] == 18
    assert "int8" not in info


def test_onnx_only_fixed_batch_human_summary(tiny_model, tmp_path, capfd):
    out = tmp_path / "onnx"
    res = run(tiny_model, "--out", out, "--format", "onnx", "--batch", "4", "--opset", "17")
    assert res.exit_code == 0, res.output
    assert capfd.readouterr().out == ""  # paddle2onnx's C++/print chatter never reaches file descriptor 1
    assert "parity onnxruntime" in res.stdout and "model.onnx" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.onnx"]  # no Paddle pair left behind
    info = json.loads((out / "export.json").read_text())
    assert info["opset"] == 17 and info["input"]["shape"] == [4, 1, 16, 16]
    assert list(info["parity"]["runtimes"]) == ["onnxruntime"]
    assert ex.onnx_session(out / "model.onnx").get_inputs()[0].shape == [4, 1, 16, 16]


def test_parity_failure_exits_3_and_writes_nothing(tiny_model, tmp_path, monkeypatch):
    real = ex.run_onnx
    monkeypatch.setattr(onnx_runtime, "run_onnx", lambda s, x: real(s, x) + np.float32(0.05))
    out = tmp_path / "out"
    res = run(tiny_model, "--out", out)
    assert res.exit_code == EXIT_PARITY
    assert "onnxruntime disagrees" in error_line(res)
    assert not out.exists() and leftovers(tmp_path) == []


def test_non_empty_out_refused_and_force_replaces_only_an_export(tiny_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for args in ([], ["--force"]):
        res = run(tiny_model, "--out", out, *args)
        assert res.exit_code == 2 and "not empty" in error_line(res), res.output
        assert (out / "keep.txt").read_text() == "mine"
    prev = tmp_path / "prev"
    assert run(tiny_model, "--out", prev, "--format", "paddle").exit_code == 0
    assert run(tiny_model, "--out", prev, "--format", "paddle").exit_code == 2
    res = run(tiny_model, "--out", prev, "--format", "paddle", "--force")
    assert res.exit_code == 0, res.output
    assert leftovers(tmp_path) == []


def test_paddle2onnx_silent_failure_detected(tiny_model, tmp_path, monkeypatch):
    import paddle2onnx

    def broken(model_file, params_file, save_file=None, **kw):  # what it does when it swallows an exception
        print("[ERROR] Failed to convert PaddlePaddle model: something unsupported.")
        open(save_file, "wb").close()

    monkeypatch.setattr(paddle2onnx, "export", broken)
    out = tmp_path / "out"
    res = run(tiny_model, "--out", out, "--format", "onnx")
    assert res.exit_code == 2
    assert "paddle2onnx wrote no ONNX model ([ERROR] Failed to convert" in error_line(res)
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("opset", [10, 22])
def test_opset_outside_range_refused(tiny_model, tmp_path, opset):
    res = run(tiny_model, "--out", tmp_path / "o", "--opset", opset)
    assert res.exit_code == 2 and f"{ex.MIN_OPSET}..{ex.MAX_OPSET}" in error_line(res)
    assert not (tmp_path / "o").exists()


def test_unwritable_destination(tiny_model, tmp_path):
    (tmp_path / "file").write_text("")
    res = run(tiny_model, "--out", tmp_path / "file" / "out")
    assert res.exit_code == 2 and "not a directory" in error_line(res)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_parent_refused(tiny_model, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        res = run(tiny_model, "--out", ro / "out")
        assert res.exit_code == 2 and "not writable" in error_line(res)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_bad_format_and_batch_refused(tiny_model, tmp_path):
    assert "use paddle, paddle-legacy, onnx" in run(tiny_model, "--out", tmp_path / "o", "--format", "tflite").stderr
    assert run(tiny_model, "--out", tmp_path / "o", "--batch", "0").exit_code == 2
    assert not (tmp_path / "o").exists()


FAST_INT8 = ["--int8-seconds", "0.5"]


def _ort(info):
    return info["int8"]["onnxruntime"]


def test_int8_force_writes_the_fastest_accurate_candidate_and_records_all(trained_resnet, tmp_path):
    out = tmp_path / "q"
    res = run(trained_resnet, "--out", out, "--int8-force", "--format", "onnx", *FAST_INT8, "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    q, ort = info["int8"], _ort(info)
    assert q["mode"] == "force" and q["cpu"]["model"] and isinstance(q["cpu"]["flags"], list)
    assert ort["calibration"]["images"] == 256 and ort["calibration"]["source"] == "digits"
    schemes = {c["scheme"]: c for c in ort["candidates"]}
    assert set(schemes) == {"qdq", "qdq-all"}                  # a CNN: no dynamic scheme
    assert {s["scheme"] for s in ort["calibration"]["skipped"]} == {"dynamic"}
    for c in schemes.values():
        assert c["error"] is None and c["accuracy_drop"] <= 0.01 and c["latency_ms_p50"] > 0 and c["speedup"] > 0
    kept = schemes[ort["chosen"]]
    assert kept["latency_ms_p50"] == min(c["latency_ms_p50"] for c in schemes.values())
    assert (out / "model.int8.onnx").is_file() and "model.int8.onnx" in info["files"]
    assert info["graphs"]["int8"]["op_types"].get("QuantizeLinear", 0) > 0
    sess = ex.onnx_session(out / "model.int8.onnx")
    assert sess.run(None, {"x": np.zeros((2, 1, 16, 16), np.float32)})[0].shape == (2, 10)


def test_int8_auto_keeps_one_only_if_it_beats_fp32(trained_resnet, tmp_path):
    out = tmp_path / "q"
    res = run(trained_resnet, "--out", out, "--int8", "--int8-schemes", "qdq", *FAST_INT8, "--json")
    assert res.exit_code == 0, res.output
    ort = _ort(json.loads(res.stdout))
    [c] = ort["candidates"]
    if c["speedup"] > 1:
        assert ort["chosen"] == "qdq" and (out / "model.int8.onnx").is_file() and "faster than FP32" in ort["decision"]
    else:
        assert ort["chosen"] is None and not (out / "model.int8.onnx").exists()
        assert "no INT8 scheme beats FP32" in ort["decision"]
    assert (out / "paddle" / "model.json").is_file()


def test_int8_calibration_data_from_npz(trained_resnet, tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    npz = tmp_path / "calib.npz"
    np.savez(npz, x=d.images[:40] / 16.0, y=d.target[:40])
    out = tmp_path / "q"
    res = run(trained_resnet, "--out", out, "--int8", "--int8-schemes", "qdq", "--format", "onnx",
              "--calib-data", npz, *FAST_INT8, "--json")
    assert res.exit_code == 0, res.output
    cal = _ort(json.loads(res.stdout))["calibration"]
    assert cal["source"] == str(npz) and cal["images"] == 24  # the .npz's 60 % training split


def test_int8_accuracy_gate(tiny_model, tmp_path, monkeypatch):
    """Miscalibrated candidates lose accuracy: auto writes no INT8 model (and says why); force fails with exit 4."""
    class Miscalibrated(ort_int8._CalibrationReader):  # ranges from near-black images: real inputs saturate
        def __init__(self, x, batch, name):
            super().__init__(x * 1e-3, batch, name)

    monkeypatch.setattr(ort_int8, "_CalibrationReader", Miscalibrated)
    out = tmp_path / "q"
    args = ["--format", "onnx", "--max-acc-drop", "0.5", "--int8-schemes", "qdq", *FAST_INT8]
    res = run(tiny_model, "--out", out, "--int8-force", *args)
    assert res.exit_code == EXIT_ACCURACY, res.output
    assert "no INT8 scheme for ONNX Runtime stays within 0.5 accuracy points" in error_line(res)
    assert not out.exists() and leftovers(tmp_path) == []
    res = run(tiny_model, "--out", out, "--int8", *args, "--json")
    assert res.exit_code == 0, res.output
    assert _ort(json.loads(res.stdout))["chosen"] is None and not (out / "model.int8.onnx").exists()


def _pruned_bundle(tiny_model, tmp_path, removed):
    """The tiny model with blocks replaced by Identity, saved with its sidecar naming them removed."""
    import paddle

    from compress.model.bundle import load_model, save_model
    from compress.model.sidecar import read_sidecar

    bundle = load_model(tiny_model)
    for path in removed:
        stage, idx = (int(v) for v in path.split(".")[1:])
        bundle.model.stages[stage][idx] = paddle.nn.Identity()
    pruned = tmp_path / "pruned.pdparams"
    save_model(bundle.model, pruned, {**read_sidecar(tiny_model), "removed_blocks": list(removed)})
    return pruned


def test_removed_blocks_are_gone_from_both_graphs(exported, tiny_model, tmp_path):
    from compress.model.bundle import load_model

    removed = ["stages.0.1", "stages.1.2"]
    model = load_model(tiny_model).model
    block_params = sum(int(np.prod(p.shape)) for path in removed
                       for p in model.stages[int(path.split(".")[1])][int(path.split(".")[2])].state_dict().values())
    src = _pruned_bundle(tiny_model, tmp_path, removed)
    out = tmp_path / "pruned"
    info = ex.export_model(src, out)
    full, pruned = ex.graph_stats(exported[1]), ex.graph_stats(out)
    assert info["graphs"] == pruned
    for fmt in ("paddle", "onnx"):
        assert pruned[fmt]["ops"] < full[fmt]["ops"]
        assert full[fmt]["param_elements"] - pruned[fmt]["param_elements"] == block_params
    per_block = {"paddle": {"conv2d": 2, "batch_norm_": 2, "relu": 2, "add": 1},
                 "onnx": {"Conv": 2, "BatchNormalization": 2, "Relu": 2, "Add": 1}}
    for fmt, ops in per_block.items():
        for op, n in ops.items():
            assert full[fmt]["op_types"][op] - pruned[fmt]["op_types"][op] == n * len(removed), (fmt, op)
