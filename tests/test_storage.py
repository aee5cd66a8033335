"""Weights and sidecar are one unit on disk: a reader sees the old pair or the new one, never a mix, whatever
happens between the steps of a write (a kill, a full disk, a directory in the way, a second writer)."""
import errno
import json
import os
import pickle
import threading
import time

import numpy as np
import pytest
from tiny_files import (full_disk, hidden, hook_steps, killed_at_step, snapshot, state_matches, tiny_sidecar,
                        write_tiny)

import compress.model.storage as storage
from compress.common.errors import CompressError
from compress.model.bundle import load_model, save_model
from compress.model.sidecar import read_sidecar, sidecar_path
from compress.model.weights import load_weights


def _pair(path):
    """(weights, sidecar) as loaded, and whether they belong together (the sidecar names the width)."""
    bundle = load_model(path)
    width = bundle.sidecar.arch["kwargs"]["width"]
    return bundle, bundle.model.stem[0].weight.shape[0] == width


def _new_model(width, seed=1):
    import paddle

    from compress.model.bundle import ArchSpec, build_model

    paddle.seed(seed)
    return build_model(ArchSpec("tiny_models:TinyCNN", {"width": width}), (1, 8, 8), 10)


@pytest.fixture()
def old(tmp_path):
    return write_tiny(tmp_path / "m.pdparams", width=4)


# Each of these is a step of a write; a fault is injected at the k-th call of any of them.
STEPS = [(os, "replace"), (os, "rename"), (os, "fsync"), (os, "unlink")]


def test_a_kill_between_any_two_steps_leaves_a_consistent_pair(old, monkeypatch):
    """The crash injected between the weights and sidecar writes, and between every other pair of steps."""
    k = 1
    while True:
        new = _new_model(6)
        finished = killed_at_step(monkeypatch, STEPS, k, lambda: save_model(new, old, tiny_sidecar(6)))
        bundle, consistent = _pair(old)
        assert consistent, f"killed at step {k}: weights and sidecar do not belong together"
        width = bundle.sidecar.arch["kwargs"]["width"]
        if finished:
            assert width == 6
            break
        write_tiny(old, width=4)  # back to the old pair for the next step
        k += 1
    assert k >= 3  # there were steps to interrupt
    assert hidden(old.parent) == []  # a later write or read cleaned up what the kills left


@pytest.mark.parametrize("k", range(1, 8))
def test_a_failure_at_any_step_leaves_the_old_pair(old, monkeypatch, k):
    before = snapshot(old, sidecar_path(old))
    model = _new_model(6)

    def fail():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    calls = hook_steps(monkeypatch, STEPS, k, fail)
    try:
        save_model(model, old, tiny_sidecar(6))
    except CompressError as e:
        assert e.exit_code == 2 and "No space left" in str(e)
        monkeypatch.undo()
        assert snapshot(old, sidecar_path(old)) == before and hidden(old.parent) == []
    else:  # the fault came after the new pair was in place (cleaning up), or never (fewer steps than k)
        monkeypatch.undo()
        assert _pair(old)[0].sidecar.arch["kwargs"]["width"] == 6
        if calls[0] < k:
            assert hidden(old.parent) == []
    assert _pair(old)[1]


@pytest.mark.parametrize("where", ["weights", "mid-weights", "sidecar"])
def test_full_disk_while_writing_leaves_the_old_pair(old, monkeypatch, where):
    before = snapshot(old, sidecar_path(old))
    model = _new_model(6)
    size = len(storage.encode_weights(model.state_dict(), old))
    full_disk(monkeypatch, old.parent, {"weights": 0, "mid-weights": size // 2, "sidecar": size + 100}[where])
    with pytest.raises(CompressError, match="No space left") as e:
        save_model(model, old, tiny_sidecar(6))
    assert e.value.exit_code == 2
    monkeypatch.undo()
    assert snapshot(old, sidecar_path(old)) == before and hidden(old.parent) == []


def test_a_directory_where_the_sidecar_goes_writes_nothing(tmp_path):
    sidecar_path(tmp_path / "m.pdparams").mkdir()
    with pytest.raises(CompressError, match="is a directory"):
        save_model(_new_model(4), tmp_path / "m.pdparams", tiny_sidecar(4))
    assert not (tmp_path / "m.pdparams").exists() and hidden(tmp_path) == []


def test_two_concurrent_writers_leave_one_whole_pair(old, monkeypatch):
    """Writer A is held up in the middle of its write (at its second rename) while writer B writes a whole
    pair: without a lock, A's remaining step would pair B's weights with A's sidecar."""
    real = os.replace
    a_started, calls = threading.Event(), {"a": 0}

    def replace(*args, **kw):
        if threading.current_thread().name == "a":
            calls["a"] += 1
            a_started.set()
            if calls["a"] == 2:
                time.sleep(0.5)
        return real(*args, **kw)
    monkeypatch.setattr(os, "replace", replace)
    models = {"a": _new_model(6, seed=6), "b": _new_model(8, seed=8)}
    widths, errors = {"a": 6, "b": 8}, []

    def write(name):
        if name == "b":
            a_started.wait(5)
        try:
            save_model(models[name], old, tiny_sidecar(widths[name]))
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=write, args=(n,), name=n) for n in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    bundle, consistent = _pair(old)
    width = bundle.sidecar.arch["kwargs"]["width"]
    assert consistent and state_matches(load_weights(old), models["a" if width == 6 else "b"].state_dict())
    assert hidden(old.parent) == []


def test_weights_changed_behind_the_sidecars_back_are_refused(old):
    other = write_tiny(old.with_name("o.pdparams"), width=4, seed=5)
    old.write_bytes(other.read_bytes())  # same architecture, other weights: not what the sidecar describes
    with pytest.raises(CompressError, match="does not match its sidecar") as e:
        load_model(old)
    assert e.value.exit_code == 2


def test_the_sidecar_records_the_weights_hash(old):
    from compress.common.fileio import sha256

    assert read_sidecar(old).weights_sha256 == sha256(old)


def test_an_interrupted_publish_is_read_through_its_journal_and_completed_by_the_next_writer(old):
    """The journal: new weights in place, the new sidecar still pending -> readers get the new pair, and leave
    the files as they are; the next writer of the model moves the journal into place first."""
    new = _new_model(6)
    state = storage.encode_weights(new.state_dict(), old)
    sc = tiny_sidecar(6)
    pending = storage.pending_path(old)
    pending.write_text(json.dumps({**sc, "weights_sha256": storage.digest(state)}))
    old.write_bytes(state)
    bundle, consistent = _pair(old)
    assert consistent and bundle.sidecar.arch["kwargs"]["width"] == 6
    assert pending.exists() and read_sidecar(old).arch["kwargs"]["width"] == 6      # read-only
    from compress.model.sidecar import finish_journal, sidecar_path

    finish_journal(old)
    assert not pending.exists() and json.loads(sidecar_path(old).read_text())["arch"]["kwargs"]["width"] == 6


# --------------------------------------------------------------------------- what a weights file may hold
def _weights_file(tmp_path, **arrays):
    p = tmp_path / "w.pdparams"
    p.write_bytes(pickle.dumps(arrays, protocol=4))
    return p


@pytest.mark.parametrize("bad", [np.array([1.0, np.nan], np.float32), np.array([np.inf], np.float32),
                                 np.array([-np.inf, 0], np.float16)])
def test_non_finite_weights_are_refused(tmp_path, bad):
    p = _weights_file(tmp_path, a=np.zeros(3, np.float32), b=bad)
    with pytest.raises(CompressError, match=r"b holds NaN or infinite values") as e:
        load_weights(p)
    assert e.value.exit_code == 2


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([b"x"]), np.array(["s", 1], dtype=object)])
def test_weights_that_are_not_numbers_are_refused(tmp_path, bad):
    p = _weights_file(tmp_path, a=np.zeros(3, np.float32), b=bad)
    with pytest.raises(CompressError, match="b is not a numeric array") as e:
        load_weights(p)
    assert e.value.exit_code == 2
