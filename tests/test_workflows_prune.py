"""`compress prune`: planning, surgery, healing with distillation, lineage, bad input, 2-process healing."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import compress
from helpers import invoke, one_line_error

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("heal") / "m.pdparams"
    res = invoke("train", "--arch", "tiny_models:TinyCNN", "--input-shape", "1,8,8", "--epochs", 6, "--lr", 0.01,
                 "--drop-path-rate", 0.2, "--schedule", "adaptive", "--target-keep", 0.5, "--warmup-epochs", 1,
                 "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_dry_run_prints_plan_and_writes_nothing(trained):
    before = sorted(trained.parent.iterdir())
    res = invoke("prune", trained, "--keep", 0.5, "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)["plan"]
    assert plan["blocks_before"] == 4 and plan["blocks_after"] == 2 and len(plan["remove"]) == 2
    assert plan["params_after"] < plan["params_before"] and plan["flops_after"] < plan["flops_before"]
    assert sorted(trained.parent.iterdir()) == before


def test_prune_heal_reload_and_reprune(trained, tmp_path):
    src_bytes = trained.read_bytes()
    out = tmp_path / "p.pdparams"
    res = invoke("prune", trained, "--keep", 0.75, "--epochs", 2, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["plan"]["blocks_after"] == 3
    acc = r["accuracy"]
    assert set(acc) == {"original", "after_removal", "after_healing"}
    assert acc["after_healing"] >= acc["after_removal"] - 0.02
    assert trained.read_bytes() == src_bytes                      # input never modified
    # the pruned file holds only the kept blocks and reloads with one call
    state = pickle.loads(out.read_bytes())
    removed = r["plan"]["remove_paths"][0]
    assert not any(k.startswith(removed + ".") for k in state)
    bundle = compress.load_model(out)
    assert len(bundle.sidecar["blocks"]) == 3 and bundle.sidecar["removed_blocks"] == [removed]
    lineage = bundle.sidecar["lineage"][-1]
    assert lineage["parent"] == str(trained) and len(lineage["parent_sha256"]) == 64
    assert lineage["keep"] == 0.75 and lineage["criterion"] == "survival"
    from compress.training.evaluate import accuracy
    from compress.data import ModelData

    ds = ModelData.of_model(bundle)
    assert abs(accuracy(bundle.model, ds, "test") - acc["after_healing"]) < 1e-9
    # re-pruning composes and the lineage chains
    out2 = tmp_path / "pp.pdparams"
    res = invoke("prune", out, "--keep", 0.34, "--epochs", 0, "--criterion", "last", "--out", out2)
    assert res.exit_code == 0, res.output
    sc = compress.load_model(out2).sidecar
    assert len(sc["blocks"]) == 1 and len(sc["removed_blocks"]) == 3
    assert [s["parent"] for s in sc["lineage"]] == [str(trained), str(out)]
    assert abs(sc["lineage"][-1]["keep_total"] - 0.25) < 1e-9


@pytest.mark.parametrize("crit", ["importance", "residual", "every-other", "last", "random", "block-influence",
                                  "angular"])
def test_every_criterion_plans_a_dry_run(trained, crit):
    res = invoke("prune", trained, "--keep", 0.5, "--criterion", crit, "--dry-run", "--json")
    assert res.exit_code == 0, (crit, res.output)
    assert len(json.loads(res.stdout)["plan"]["remove"]) == 2


def test_default_output_name_and_explicit_blocks(trained, tmp_path):
    import shutil

    src = tmp_path / "m.pdparams"
    shutil.copy(trained, src)
    shutil.copy(trained.with_name("m.compress.json"), tmp_path / "m.compress.json")
    res = invoke("prune", src, "--keep", 0.8, "--epochs", 0)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m.keep0.8.pdparams").is_file() and (tmp_path / "m.keep0.8.compress.json").is_file()
    res = invoke("prune", src, "--blocks", "0,3", "--dry-run", "--json")
    assert json.loads(res.stdout)["plan"]["remove"] == [0, 3]


@pytest.mark.parametrize("args,words", [
    (["--keep", 0], "--keep must be in (0, 1]"),
    (["--keep", 1.5], "--keep must be in (0, 1]"),
    (["--keep", 0.1], "leaves no block"),
    (["--blocks", "1,9"], "out of range"),
    (["--blocks", "1,1"], "repeats"),
    (["--blocks", "0,1,2,3"], "all 4 blocks"),
    (["--keep", 0.5, "--criterion", "magic"], "unknown criterion"),
    (["--keep", 0.5, "--lr", "nan"], "finite"),
    (["--keep", 0.5, "--temperature", "nan"], "finite"),
], ids=["keep-0", "keep-1.5", "keep-0.1", "block-out-of-range", "block-repeats", "every-block", "criterion",
        "lr-nan", "temperature-nan"])
def test_bad_prune_flags_one_error_line(trained, args, words):
    assert words in one_line_error(invoke("prune", trained, *args))


def test_bad_inputs(trained, tmp_path):
    # healing data that does not fit the model
    np.savez(tmp_path / "three.npz", x=np.random.rand(40, 8, 8), y=np.arange(40) % 3)
    err = one_line_error(invoke("prune", trained, "--keep", 0.5, "--data", tmp_path / "three.npz", "--out",
                                tmp_path / "x.pdparams"))
    assert "outputs 10 logits but the data has 3 classes" in err
    # a bad --export directory is refused before anything is pruned or written
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    err = one_line_error(invoke("prune", trained, "--keep", 0.5, "--epochs", 0, "--export", tmp_path / "full",
                                "--out", tmp_path / "e.pdparams"))
    assert "--export" in err and "not empty" in err
    assert not (tmp_path / "e.pdparams").exists() and not (tmp_path / "x.pdparams").exists()
    # a model with no removable block
    flat = tmp_path / "flat.pdparams"
    assert invoke("train", "--arch", "tiny_models:TinyCNN", "--input-shape", "1,8,8", "--epochs", 0,
                  "--drop-path-rate", 0, "--out", flat).exit_code == 0
    sc = json.loads(flat.with_name("flat.compress.json").read_text())
    # no statistics -> the default criterion says which command makes them
    err = one_line_error(invoke("prune", flat, "--keep", 0.5, "--epochs", 0))
    assert "needs survival statistics" in err and "compress train" in err
    # no data available for healing
    sc["data"] = None
    flat.with_name("flat.compress.json").write_text(json.dumps(sc))
    assert "healing needs data" in one_line_error(invoke("prune", flat, "--blocks", "1"))
    pruned = tmp_path / "one.pdparams"
    assert invoke("prune", trained, "--blocks", "0,1,2", "--epochs", 0, "--out", pruned).exit_code == 0
    # one block left: --keep 0.5 of 1 block rounds to 1 -> nothing to remove is fine; removing it is refused
    assert "all 1 blocks" in one_line_error(invoke("prune", pruned, "--blocks", "0"))
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_two_process_healing_matches_one_process(tmp_path):
    """paddle.distributed.launch, 2 CPU processes on loopback, DataParallel: same model as one process."""
    env = {**os.environ, "PYTHONPATH": str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    exe = str(Path(sys.executable).with_name("compress"))
    base = tmp_path / "t.pdparams"
    subprocess.run([exe, "train", "--arch", "tiny_models:TinyTransformer", "--input-shape", "1,8,8", "--epochs", "0",
                    "--drop-path-rate", "0", "--out", str(base)], check=True, env=env, capture_output=True)
    args = ["prune", str(base), "--blocks", "1", "--epochs", "1", "--batch-size", "64"]
    subprocess.run([exe, *args, "--out", str(tmp_path / "one.pdparams")], check=True, env=env, capture_output=True)
    res = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                          "--log_dir", str(tmp_path / "logs"), exe, *args, "--out", str(tmp_path / "two.pdparams")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("workerlog.*"))
    assert "wrote" in logs
    one, two, start = (pickle.loads((tmp_path / n).read_bytes()) for n in ("one.pdparams", "two.pdparams", "t.pdparams"))
    assert set(one) == set(two)
    moved = max(float(np.abs(one[k] - start[k]).max()) for k in one)
    diff = max(float(np.abs(one[k] - two[k]).max()) for k in one)
    assert moved > 1e-3 and diff < 1e-5, (moved, diff)
    # only rank 0 wrote: exactly one output model and sidecar
    assert sorted(p.name for p in tmp_path.glob("two*")) == ["two.compress.json", "two.pdparams"]


def test_hidden_loss_is_zero_on_equal_states_and_scale_free():
    import paddle

    from compress.training.distill import hidden_loss

    t = paddle.to_tensor(np.random.default_rng(0).normal(size=(4, 6)).astype("float32"))
    s = t + 0.5
    assert float(hidden_loss(t, t)) == 0.0
    base = float(hidden_loss(s, t))
    assert base > 0 and abs(float(hidden_loss(10 * s, 10 * t)) - base) < 1e-4 * base  # features' scale cancels
    assert abs(float(hidden_loss(s, t, scale=0.25)) - base / 4) < 1e-6


def test_heal_distilling_the_hidden_state(trained, tmp_path):
    healing = {}
    for target in ("logits", "hidden"):
        out = tmp_path / f"{target}.pdparams"
        res = invoke("prune", trained, "--keep", 0.5, "--epochs", 1, "--patience", 1, "--distill-target", target,
                     "--out", out, "--json")
        assert res.exit_code == 0, res.output
        healing[target] = compress.load_model(out).sidecar["lineage"][-1]["healing"]
        assert healing[target]["distill_target"] == target
    # the MSE term is in the loss (the same seed, data and epochs otherwise): a larger training loss
    assert healing["hidden"]["history"][0]["loss"] > healing["logits"]["history"][0]["loss"]
    assert "--distill-target must be one of logits, hidden" in one_line_error(
        invoke("prune", trained, "--keep", 0.5, "--distill-target", "features"))


def test_hidden_distillation_needs_a_classifier():
    import paddle.nn as nn

    from compress.common.errors import CompressError
    from compress.training.distill import hidden_taps

    class NoHead(nn.Layer):  # its logits come from a pooling, no Linear/Conv gives them
        def forward(self, x):
            return x.reshape([x.shape[0], -1])[:, :10]

    with pytest.raises(CompressError, match="classifier"):
        hidden_taps(NoHead(), NoHead(), (1, 4, 4), 10)


def test_prune_reads_its_input_once(trained, tmp_path, monkeypatch):
    """Teacher, student and the self-check's rebuilds are copies of one read: a writer replacing the input meanwhile
    cannot give the student other weights than the teacher's (a torn read once looked like a failed self-check)."""
    import compress.model.storage as storage

    reads = []
    real = storage.read_bytes

    def counting(path):
        reads.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(storage, "read_bytes", counting)
    res = invoke("prune", trained, "--keep", 0.5, "--epochs", 1, "--out", tmp_path / "once.pdparams", "--json")
    assert res.exit_code == 0, res.output
    assert reads == [trained.name]
    lineage = compress.load_model(tmp_path / "once.pdparams").sidecar["lineage"][-1]
    from compress.common.fileio import sha256

    assert lineage["parent_sha256"] == sha256(trained)
