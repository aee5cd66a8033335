"""Bad input exits 2 with one `error:` line (never 1, "internal error"), and is refused before anything big is
allocated; typer's own usage errors are rendered the same way."""
import json
import os
import pickle
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke, one_line_error
from tiny_files import full_disk, hidden, snapshot, write_tiny

from compress.common.errors import CompressError
from compress.model.sidecar import read_sidecar

COMPRESS = str(Path(sys.executable).with_name("compress"))
TESTS = str(Path(__file__).resolve().parent)
TRAIN = ["train", "--arch", "tiny_models:TinyCNN", "--input-shape", "1,8,8", "--epochs", 0]


@pytest.fixture()
def model(tmp_path):
    return write_tiny(tmp_path / "m.pdparams")


def _with_sidecar(model, **changes):
    path = model.with_name("m.compress.json")
    sc = json.loads(path.read_text())
    for k, v in changes.items():
        if v is KeyError:
            sc.pop(k, None)
        else:
            sc[k] = v
    path.write_text(json.dumps(sc))
    return model


@pytest.mark.parametrize("changes,words", [
    ({"arch": KeyError}, "arch"),
    ({"arch": "resnet_tiny"}, "arch"),
    ({"arch": {"kwargs": {}}}, "arch"),
    ({"arch": {"spec": "tiny_models:TinyCNN", "kwargs": [1]}}, "kwargs"),
    ({"input_shape": [-1, 8, 8]}, "input_shape"),
    ({"input_shape": [1.5, 8, 8]}, "input_shape"),
    ({"input_shape": [1, 8]}, "input_shape"),
    ({"input_shape": "1,8,8"}, "input_shape"),
    ({"num_classes": -3}, "num_classes"),
    ({"num_classes": 2.5}, "num_classes"),
    ({"removed_blocks": "stages.0.0"}, "removed_blocks"),
    ({"lineage": {"a": 1}}, "lineage"),
])
def test_bad_sidecars_exit_2(model, changes, words):
    _with_sidecar(model, **changes)
    for cmd in (["blocks", model], ["prune", model, "--blocks", "0", "--epochs", 0, "--dry-run"]):
        err = one_line_error(invoke(*cmd))
        assert words in err and "m.compress.json" in err


def test_sidecar_checked_before_anything_is_allocated(model):
    _with_sidecar(model, input_shape=[1, 100000, 100000])
    with pytest.raises(CompressError, match="input_shape") as e:
        read_sidecar(model)
    assert e.value.exit_code == 2


def _limited(args, cwd, gb=6):
    """Run the real console script with at most ``gb`` GB of address space."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (gb << 30, gb << 30))
    env = {**os.environ, "PYTHONPATH": TESTS}
    return subprocess.run([COMPRESS, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          preexec_fn=limit, timeout=300)


def test_a_huge_input_shape_is_refused_under_a_memory_limit(model, tmp_path):
    _with_sidecar(model, input_shape=[1, 100000, 100000])
    res = _limited(["blocks", model], tmp_path)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "input_shape" in lines[0] and "Memory" not in res.stderr


def test_a_label_of_a_billion_is_refused_under_a_memory_limit(tmp_path):
    np.savez(tmp_path / "big.npz", x=np.random.rand(20, 8, 8), y=np.r_[np.zeros(19, int), 10**9])
    res = _limited([*TRAIN, "--data", tmp_path / "big.npz", "--out", tmp_path / "x.pdparams"], tmp_path)
    assert res.returncode == 2, res.stderr
    assert "label" in res.stderr and "Memory" not in res.stderr


@pytest.mark.parametrize("arrays,words", [
    ({}, "needs arrays"),
    ({"x": np.zeros((0, 8, 8)), "y": np.zeros(0, int)}, ""),
    ({"x": np.array([["a"] * 8] * 20), "y": np.arange(20) % 2}, "x"),
    ({"x": np.random.rand(20, 8, 8), "y": np.array(["a"] * 20)}, "label"),
])
def test_bad_npz_exit_2(tmp_path, arrays, words):
    np.savez(tmp_path / "bad.npz", **arrays)
    err = one_line_error(invoke(*TRAIN, "--data", tmp_path / "bad.npz", "--out", tmp_path / "x.pdparams"))
    assert words in err


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array(["s", 1], dtype=object),
                                 np.array([np.nan], np.float32)])
def test_bad_weight_arrays_exit_2(model, bad):
    state = pickle.loads(model.read_bytes())
    state["stem.0.bias"] = bad
    model.write_bytes(pickle.dumps(state, protocol=4))
    _with_sidecar(model, weights_sha256=KeyError)
    assert "stem.0.bias" in one_line_error(invoke("blocks", model))


def test_arch_kwargs_as_a_json_list(model):
    assert "--arch-kwargs must be a JSON object" in one_line_error(invoke("blocks", "--arch", "resnet_tiny",
                                                                          "--arch-kwargs", "[1]"))
    assert "--arch-kwargs" in one_line_error(invoke(*TRAIN[:-2], "--arch-kwargs", "[1, 2]", "--out", "x.pdparams"))


def test_full_disk_exits_2_and_leaves_the_old_model(model, tmp_path, monkeypatch):
    out = write_tiny(tmp_path / "k.pdparams", width=6)
    before = snapshot(out, out.with_name("k.compress.json"))
    full_disk(monkeypatch, tmp_path, after_bytes=100)
    err = one_line_error(invoke("prune", model, "--blocks", "0", "--epochs", 0, "--out", out))
    assert "No space left on device" in err
    monkeypatch.undo()
    assert snapshot(out, out.with_name("k.compress.json")) == before and hidden(tmp_path) == []


@pytest.mark.parametrize("args,words", [
    (["prune"], "Missing argument"),
    (["prune", "m.pdparams", "--keep", "abc"], "--keep"),
    (["prune", "m.pdparams", "--bogus"], "--bogus"),
    (["nosuchcommand"], "nosuchcommand"),
    (["export", "m.pdparams"], "--out"),
])
def test_usage_errors_are_one_error_line(args, words):
    res = invoke(*args)
    err = one_line_error(res)
    assert words in err and "compress" in err
    assert not any(c in res.output for c in "╭│╰")


# --------------------------------------------------------------------------- on the real console script
def _run(*args, cwd=None):
    return subprocess.run([COMPRESS, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHONPATH": TESTS})


def _one_error(r, code=2):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1, r.stderr
    return errors[0]


def test_weights_that_are_not_files_say_what_they_are(tmp_path):
    link = tmp_path / "zero.pdparams"
    link.symlink_to("/dev/zero")
    assert "not a file: it is a character device (through a symbolic link)" in _one_error(_run("blocks", link))
    fifo = tmp_path / "pipe.pdparams"
    os.mkfifo(fifo)
    assert "not a file: it is a FIFO (named pipe)" in _one_error(_run("blocks", fifo))


def test_a_sidecar_that_is_a_device_or_a_fifo_says_so(model):
    side = model.with_name("m.compress.json")
    side.unlink()
    side.symlink_to("/dev/urandom")
    assert "not a sidecar file: it is a character device" in _one_error(_run("blocks", model))
    side.unlink()
    os.mkfifo(side)
    assert "not a sidecar file: it is a FIFO (named pipe)" in _one_error(_run("blocks", model))


def test_deeply_nested_sidecar_and_huge_pickle_lengths_exit_2(model, tmp_path):
    side = model.with_name("m.compress.json")
    side.write_text("[" * 100000 + "]" * 100000)
    assert "nested too deeply" in _one_error(_run("blocks", model))
    bomb = tmp_path / "bomb.pdparams"
    bomb.write_bytes(b"\x80\x04\x8e" + (2 ** 40).to_bytes(8, "little") + b"ab.")   # BINBYTES8 of 1 TiB
    err = _one_error(_run("blocks", bomb, "--arch", "tiny_models:TinyCNN", "--input-shape", "1,8,8"))
    assert "bomb.pdparams" in err and ("truncated" in err or "far larger" in err)


def test_a_sidecar_naming_a_function_where_a_class_goes_exits_2_and_runs_nothing(model, tmp_path):
    _with_sidecar(model, arch={"spec": "paddle.vision.models:ResNet", "kwargs": {"block": "os.system", "depth": 18}})
    err = _one_error(_run("blocks", model))
    assert "building the model paddle.vision.models:ResNet failed in its own code" in err


def test_a_planted_journal_is_ignored_by_readers_and_reported(model):
    from compress.common.fileio import sha256
    from compress.model.sidecar import pending_path

    side = model.with_name("m.compress.json")
    planted = {**json.loads(side.read_text()), "num_classes": 3, "weights_sha256": sha256(model)}
    pending_path(model).write_text(json.dumps(planted))
    before = snapshot(model, side, pending_path(model))
    r = _run("blocks", model, "--json")
    assert r.returncode == 0, r.stderr
    assert snapshot(model, side, pending_path(model)) == before           # a reader changes nothing
    assert "ignored (the sidecar in place matches the weights" in r.stderr


def test_a_full_disk_during_healing_leaves_no_checkpoint_directory(model, tmp_path, monkeypatch):
    out = tmp_path / "healed.pdparams"
    full_disk(monkeypatch, tmp_path, after_bytes=0)
    err = one_line_error(invoke("prune", model, "--blocks", "0", "--epochs", 1, "--out", out))
    assert "No space left on device" in err
    monkeypatch.undo()
    assert not out.with_name(out.name + ".ckpt").exists() and not out.exists() and hidden(tmp_path) == []


def test_too_little_free_space_is_found_before_training(model, tmp_path, monkeypatch):
    import shutil as sh
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda p: usage(10 ** 9, 10 ** 9 - 1000, 1000))
    err = one_line_error(invoke(*TRAIN[:-1], 3, "--out", tmp_path / "t.pdparams"))
    assert "MB free on its file system" in err and "needed" in err
    err = one_line_error(invoke("prune", model, "--blocks", "0", "--epochs", 1, "--out", tmp_path / "p.pdparams"))
    assert "MB free on its file system" in err
    assert list(tmp_path.glob("*.ckpt")) == [] and not (tmp_path / "t.pdparams").exists()


def test_a_huge_sparse_weights_file_is_refused_without_reading_it(tmp_path):
    import time as _time

    big = tmp_path / "sparse.pdparams"
    with open(big, "wb") as f:
        f.truncate(6 * 10 ** 9)              # 6 GB of holes: reading it whole took 50 s and 6.6 GB
    t0 = _time.monotonic()
    err = _one_error(_run("blocks", big, "--arch", "tiny_models:TinyCNN", "--input-shape", "1,8,8"))
    assert "not a pickle" in err and "not read" in err and _time.monotonic() - t0 < 60
    r = subprocess.run([COMPRESS, "blocks", str(big), "--arch", "tiny_models:TinyCNN", "--input-shape", "1,8,8"],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": TESTS, "COMPRESS_MAX_WEIGHTS_GB": "1"})
    assert "larger than the 1 GB a weights file may be" in _one_error(r)
