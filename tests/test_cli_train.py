"""`compress train`, `stats`, `blocks` through the CLI, on tiny models and the built-in digits."""
import json
import pickle

import numpy as np
import pytest
from helpers import invoke, one_line_error

TINY = ["--arch", "tiny_models:TinyCNN", "--input-shape", "1,8,8"]


def test_version():
    res = invoke("--version")
    assert res.exit_code == 0 and res.stdout.startswith("compress ")


@pytest.fixture(scope="module")
def linear_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("lin") / "m.pdparams"
    res = invoke("train", *TINY, "--epochs", 4, "--lr", 0.01, "--drop-path-rate", 0.3, "--schedule", "linear", "--out", out, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["blocks"] == 4 and summary["test_accuracy"] > 0.5
    return out


def test_linear_schedule_survival(linear_model):
    res = invoke("stats", linear_model, "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    blocks = info["blocks"]
    assert [b["block"] for b in blocks] == ["stages.0.0", "stages.0.1", "stages.1.1", "stages.1.2"]
    for key in ("block", "survival_rate", "importance", "importance_stderr", "residual_ratio"):
        assert key in blocks[0]
    assert blocks[0]["survival_rate"] == 1.0
    assert abs(blocks[-1]["survival_rate"] - 0.7) < 0.04
    assert blocks[1]["survival_rate"] > blocks[2]["survival_rate"] > blocks[3]["survival_rate"]
    assert all(b["residual_ratio"] > 0 for b in blocks)


def test_stats_table_and_plot(linear_model, tmp_path):
    png = tmp_path / "s.png"
    res = invoke("stats", linear_model, "--plot", png)
    assert res.exit_code == 0 and "stages.1.2" in res.stdout and "importance" in res.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "afile").write_text("x")
    assert "cannot write" in one_line_error(invoke("stats", linear_model, "--plot", tmp_path / "afile" / "s.png"))


def test_sidecar_contents(linear_model):
    sc = json.loads(linear_model.with_name("m.compress.json").read_text())
    assert sc["arch"]["spec"] == "tiny_models:TinyCNN" and sc["input_shape"] == [1, 8, 8]
    assert sc["data"]["source"] == "digits" and sc["training"]["schedule"]["name"] == "linear"
    assert len(sc["blocks"]) == 4 and len(sc["statistics"]) == 4 and 0 < sc["metrics"]["test_accuracy"] <= 1


def test_same_seed_same_result(tmp_path):
    outs = []
    for i in range(2):
        out = tmp_path / f"s{i}.pdparams"
        assert invoke("train", *TINY, "--epochs", 1, "--drop-path-rate", 0.2, "--seed", 7, "--out", out).exit_code == 0
        outs.append(pickle.loads(out.read_bytes()))
    assert set(outs[0]) == set(outs[1])
    for k in outs[0]:
        np.testing.assert_array_equal(outs[0][k], outs[1][k])


def test_fine_tune_from_weights_and_blocks_command(linear_model, tmp_path):
    out = tmp_path / "ft.pdparams"
    res = invoke("train", linear_model, "--epochs", 1, "--drop-path-rate", 0.1, "--schedule", "uniform", "--out", out)
    assert res.exit_code == 0, res.output
    res = invoke("blocks", out, "--json")
    assert res.exit_code == 0
    info = json.loads(res.stdout)
    assert [b["droppath"] for b in info["blocks"]] == ["wrapped"] * 4
    res = invoke("blocks", "--arch", "vit_tiny")
    assert res.exit_code == 0 and "blocks.7" in res.stdout and "own" in res.stdout


@pytest.mark.parametrize("args,words", [
    (["--arch", "resnet9000"], "unknown architecture"),
    ([*TINY, "--arch-kwargs", "{width: 4"], "not valid JSON"),
    ([*TINY, "--drop-path-rate", 1.0], "[0, 1)"),
    ([*TINY, "--drop-path-rate", -0.1], "[0, 1)"),
    ([*TINY, "--lr", "nan"], "finite"),
    ([*TINY, "--schedule", "adaptive", "--target-keep", 0.5, "--drop-path-rate", 0.8],
     "--max-rate (0.7) must be in [--drop-path-rate (0.8), 1)"),
    ([*TINY, "--arch-kwargs", '{"num_classes": 3}'], "--arch-kwargs sets num_classes 3 but the data has 10 classes"),
], ids=["unknown-arch", "bad-json", "rate-1", "rate-negative", "lr-nan", "max-rate-below-rate", "num-classes"])
def test_bad_train_flags_one_error_line(tmp_path, args, words):
    assert words in one_line_error(invoke("train", *args, "--out", tmp_path / "o.pdparams"))


def test_bad_input_files(tmp_path, linear_model):
    out = tmp_path / "o.pdparams"
    # missing file
    assert "no such file" in one_line_error(invoke("train", tmp_path / "nope.pdparams", "--out", out))
    # not a weights file (with a valid sidecar next to it)
    junk = tmp_path / "junk.pdparams"
    junk.write_text("this is not a pickle")
    junk.with_name("junk.compress.json").write_text(linear_model.with_name("m.compress.json").read_text())
    assert "not a weights file" in one_line_error(invoke("blocks", junk))
    # truncated file
    trunc = tmp_path / "trunc.pdparams"
    trunc.write_bytes(linear_model.read_bytes()[:200])
    trunc.with_name("trunc.compress.json").write_text(linear_model.with_name("m.compress.json").read_text())
    assert "truncated" in one_line_error(invoke("blocks", trunc))
    # weights that do not match the architecture
    err = one_line_error(invoke("blocks", linear_model, "--arch", "tiny_models:TinyCNN", "--arch-kwargs", '{"width": 4}'))
    assert "do not match" in err and "shape" in err
    err = one_line_error(invoke("blocks", linear_model, "--arch", "tiny_models:TinyTransformer"))
    assert "missing" in err and "unexpected" in err
    np.savez(tmp_path / "five.npz", x=np.random.rand(40, 5, 8, 8), y=np.arange(40) % 10)
    assert "cannot adapt 5-channel" in one_line_error(invoke("train", *TINY, "--data", tmp_path / "five.npz",
                                                             "--out", out))
    # empty or unreadable data directory
    (tmp_path / "empty").mkdir()
    assert "empty data directory" in one_line_error(invoke("train", *TINY, "--data", tmp_path / "empty", "--out", out))
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_text("nope")
    assert "unreadable image" in one_line_error(invoke("train", *TINY, "--data", tmp_path / "bad", "--out", out))
    # a crafted pickle is refused, runs nothing
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pdparams"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    assert "refusing to load os.system" in one_line_error(invoke("train", evil, *TINY, "--out", out))
    assert not marker.exists()
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))
    # stats on a model trained without DropPath
    res = invoke("train", *TINY, "--epochs", 0, "--drop-path-rate", 0, "--out", out)
    assert res.exit_code == 0, res.output
    assert "no survival statistics" in one_line_error(invoke("stats", out))


def test_weak_evidence_is_warned_about_and_empty_statistics_refused(tmp_path):
    one = tmp_path / "one.pdparams"
    res = invoke("train", *TINY, "--epochs", 1, "--schedule", "adaptive", "--target-keep", 0.5, "--out", one, "--json")
    assert res.exit_code == 0, res.output
    (w,) = json.loads(res.stdout)["warnings"]
    assert "adaptive schedule never adapted" in w and "warning: the adaptive schedule never adapted" in res.stderr
    res = invoke("prune", one, "--keep", 0.5, "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    assert any("survival carries no information" in w for w in json.loads(res.stdout)["plan"]["warnings"])
    zero = tmp_path / "zero.pdparams"
    assert invoke("train", *TINY, "--epochs", 0, "--out", zero).exit_code == 0
    err = one_line_error(invoke("prune", zero, "--keep", 0.5, "--dry-run"))
    assert "are empty" in err and "every-other" in err
    assert invoke("prune", zero, "--keep", 0.5, "--criterion", "last", "--dry-run").exit_code == 0


def test_a_tiny_test_split_is_warned_about(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "few.npz", x=rng.random((60, 8, 8)).astype("float32"), y=np.arange(60) % 10)
    res = invoke("train", *TINY, "--data", tmp_path / "few.npz", "--epochs", 1, "--out", tmp_path / "m.pdparams",
                 "--json")
    assert res.exit_code == 0, res.output
    assert any(w.startswith("only 12 test images") for w in json.loads(res.stdout)["warnings"])
