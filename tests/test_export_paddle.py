"""The legacy Paddle format (written and verified in a FLAGS_enable_pir_api=0 subprocess) and Paddle-native
INT8 through PaddleSlim: real paddle, real paddleslim, tiny models."""
from __future__ import annotations

import json

import numpy as np
import paddle
import pytest

import compress.export as ex
import compress.export.legacy as legacy
import compress.export.paddle_int8 as paddle_int8
from compress.common.errors import EXIT_ACCURACY
from compress.export.graph_stats import legacy_graph_stats
from compress.model.bundle import load_model
from compress.runtimes import make_runner
from compress.workflows.sweep import sample_model
from helpers import invoke, one_line_error

FAST_INT8 = ["--int8-seconds", "0.5"]


@pytest.fixture(scope="module")
def vit_legacy(tmp_path_factory):
    """The shipped ViT (attention matmuls, GELU: the ops Paddle 3 cannot trace in legacy mode unaided)."""
    out = tmp_path_factory.mktemp("vit") / "out"
    res = invoke("export", sample_model("vit_tiny"), "--out", out, "--format", "paddle-legacy", "--json")
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout)


def test_legacy_files_parity_and_lite_command(vit_legacy):
    out, info = vit_legacy
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["export.json", "paddle-legacy/model.pdiparams", "paddle-legacy/model.pdmodel"]
    assert set(info["parity"]["runtimes"]) == {"paddle_legacy", "paddle_legacy_onednn"}
    assert all(f["passed"] for f in info["parity"]["runtimes"].values())
    leg = info["paddle_legacy"]
    assert leg["clip_extra"] is False and "matmul" in leg["legacy_ops_patched"]
    assert leg["paddle_lite_opt"].startswith("paddle_lite_opt --model_file=paddle-legacy/model.pdmodel")
    assert info["graphs"]["paddle-legacy"]["op_types"]["matmul_v2"] > 0
    assert info["graphs"]["paddle-legacy"]["param_elements"] == 281354


def test_legacy_model_runs_here_and_pir_path_is_untouched(vit_legacy, tmp_path):
    out, _ = vit_legacy
    bundle = load_model(sample_model("vit_tiny"))
    x = np.random.default_rng(0).standard_normal((3, *bundle.input_shape)).astype(np.float32)
    y = make_runner("paddle-legacy", out).run(x)
    np.testing.assert_allclose(y, ex.run_dygraph(bundle.model, x), atol=1e-4, rtol=1e-4)
    assert paddle.get_flags(["FLAGS_enable_pir_api"])["FLAGS_enable_pir_api"]   # this process: still PIR
    spec = [paddle.static.InputSpec([None, *bundle.input_shape], "float32", "x")]
    paddle.jit.save(bundle.model, str(tmp_path / "model"), input_spec=spec)
    assert (tmp_path / "model.json").is_file() and not (tmp_path / "model.pdmodel").exists()


def test_removed_blocks_are_gone_from_the_legacy_graph(trained_resnet, tmp_path):
    bundle = load_model(trained_resnet)
    full = tmp_path / "full"
    ex.export_model(bundle, full, formats="paddle-legacy")
    bundle.model.stages[0][1] = paddle.nn.Identity()            # pruned in memory: the worker gets a copy
    bundle.sidecar = bundle.sidecar.replace(removed_blocks=["stages.0.1"])
    pruned = tmp_path / "pruned"
    info = ex.export_model(bundle, pruned, formats="paddle-legacy")
    a, b = legacy_graph_stats(full / "paddle-legacy/model.pdmodel"), info["graphs"]["paddle-legacy"]
    assert a["op_types"]["conv2d"] - b["op_types"]["conv2d"] == 2 and b["param_elements"] < a["param_elements"]


def test_a_failing_subprocess_is_one_line_and_writes_nothing(trained_resnet, tmp_path, monkeypatch):
    monkeypatch.setattr(legacy, "WORKER", "compress.export.no_such_worker")
    out = tmp_path / "o"
    err = one_line_error(invoke("export", trained_resnet, "--out", out, "--format", "paddle-legacy"))
    assert "failed in the legacy-mode subprocess (FLAGS_enable_pir_api=0)" in err and "no_such_worker" in err
    assert not out.exists()


# --------------------------------------------------------------------------- PaddleSlim INT8
def test_paddleslim_int8_force_writes_records_and_runs(trained_resnet, tmp_path):
    out = tmp_path / "q"
    res = invoke("export", trained_resnet, "--out", out, "--format", "paddle", "--int8-force",
                 "--int8-schemes", "slim-abs-max", *FAST_INT8, "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    pad = info["int8"]["paddle"]
    [c] = pad["candidates"]
    assert c["scheme"] == "slim-abs-max" and c["error"] is None and pad["chosen"] == "slim-abs-max"
    assert c["accuracy_drop"] <= 0.01 and c["latency_ms_p50"] > 0 and pad["fp32"]["latency_ms_p50"] > 0
    assert c["settings"]["algo"] == "abs_max" and "matmul_v2" in c["settings"]["mkldnn_int8_ops"]
    assert pad["calibration"]["images"] == 256
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["export.json", "paddle-int8/model.pdiparams", "paddle-int8/model.pdmodel",
                     "paddle/model.json", "paddle/model.pdiparams"]      # the legacy FP32 model: an intermediate
    assert info["graphs"]["paddle-int8"]["op_types"].get("fake_quantize_range_abs_max", 0) > 0
    x = load_model(trained_resnet).model
    y = make_runner("paddle-int8", out).run(np.zeros((2, 1, 16, 16), np.float32))
    assert y.shape == (2, 10) and x is not None


def test_without_paddleslim_auto_skips_and_force_refuses(trained_resnet, tmp_path, monkeypatch):
    monkeypatch.setattr(paddle_int8, "paddleslim_installed", lambda: False)
    res = invoke("export", trained_resnet, "--out", tmp_path / "a", "--format", "paddle", "--int8", "--json")
    assert res.exit_code == 0, res.output
    assert "compress-edge[paddleslim]" in json.loads(res.stdout)["int8"]["paddle"]["skipped"]
    err = one_line_error(invoke("export", trained_resnet, "--out", tmp_path / "f", "--format", "paddle",
                                "--int8-force"))
    assert "needs PaddleSlim" in err and not (tmp_path / "f").exists()


@pytest.mark.slow  # over 25 s on 2 cores; the full suite runs it
def test_a_broken_paddle_int8_candidate_is_refused_by_the_accuracy_gate(trained_resnet, tmp_path, monkeypatch):
    real = paddle_int8.score

    def wrecked(c, l32, l8, y):     # as oneDNN's default INT8 op set did to small ViTs
        real(c, l32, np.roll(l8, 1, axis=1), y)

    monkeypatch.setattr(paddle_int8, "score", wrecked)
    args = ["--format", "paddle-legacy", "--int8-schemes", "slim-abs-max", *FAST_INT8]
    res = invoke("export", trained_resnet, "--out", tmp_path / "f", "--int8-force", *args)
    assert one_line_error(res, EXIT_ACCURACY).startswith("error: no INT8 scheme for Paddle Inference stays within")
    res = invoke("export", trained_resnet, "--out", tmp_path / "a", "--int8", *args, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["int8"]["paddle"]["chosen"] is None
    assert not (tmp_path / "a" / "paddle-int8").exists() and (tmp_path / "a" / "paddle-legacy").is_dir()
