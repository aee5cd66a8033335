"""Replacing a directory (``export --force``): the old or the new one is complete at the path at every moment."""
import os
import shutil

import pytest
from tiny_files import hook_steps, killed_at_step

import compress.common.fileio as fileio
from compress.common.fileio import atomic_dir

STEPS = [(os, "replace"), (os, "rename"), (os, "fsync"), (os, "unlink"), (os, "rmdir"), (shutil, "rmtree"),
         (fileio, "exchange")]


def _make(path, tag, n=5):
    with atomic_dir(path) as tmp:
        for i in range(n):
            (tmp / f"f{i}").write_text(tag)
        (tmp / "complete").write_text(tag)


def _content(path):
    """The tag of a complete directory at ``path`` (or None if there is none, or it is incomplete)."""
    if not (path / "complete").is_file():
        return None
    tag = (path / "complete").read_text()
    ok = all((path / f"f{i}").read_text() == tag for i in range(5))
    return tag if ok else None


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "fallback"])
def test_a_kill_at_any_step_of_a_replacement_leaves_a_complete_directory(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(fileio, "exchange", lambda a, b: False)  # as on a system without RENAME_EXCHANGE
    path = tmp_path / "export"
    k = 1
    while True:
        _make(path, "old")
        finished = killed_at_step(monkeypatch, STEPS, k, lambda: _make(path, "new"))
        tag = _content(path)
        if exchange or finished:
            assert tag in ("old", "new"), f"killed at step {k}: no complete directory at the path"
        else:  # no atomic exchange: a kill in the one window leaves the old directory beside the path
            assert tag in ("old", "new") or [_content(p) for p in tmp_path.glob(".export.*")].count("old") == 1
        if finished:
            assert tag == "new"
            break
        k += 1
    assert k >= 2


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "fallback"])
def test_a_failure_at_any_step_keeps_the_old_directory(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(fileio, "exchange", lambda a, b: False)
    path = tmp_path / "export"
    for k in range(1, 12):
        _make(path, "old")

        def fail():
            raise OSError(28, "No space left on device")
        with monkeypatch.context() as m:
            calls = hook_steps(m, STEPS, k, fail)
            try:
                _make(path, "new")
            except Exception:  # noqa: BLE001
                assert _content(path) == "old", f"failed at step {k}"
                assert sorted(p.name for p in tmp_path.iterdir()) == ["export"], f"step {k}: leftovers"
            else:
                assert _content(path) == "new"  # a failure after the switch (cleaning up) is no failure
                if calls[0] < k:
                    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
                    break
                for p in tmp_path.glob(".export.*"):  # what that failed clean-up left (hidden)
                    shutil.rmtree(p)


def test_exchange_swaps_two_directories(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b").mkdir()
    if not fileio.exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("no RENAME_EXCHANGE here")
    assert (tmp_path / "b" / "x").read_text() == "a" and not (tmp_path / "a" / "x").exists()


def test_owned_refuses_a_second_owner_and_takes_over_a_dead_ones_lock(tmp_path):
    from compress.common.errors import CompressError
    from compress.common.fileio import owned

    out = tmp_path / "E"
    (tmp_path / ".E.lock").write_text("pid 999999 (compress export, long dead)")   # no process holds it
    with owned(out, "first"):
        assert (tmp_path / ".E.lock").read_text() == f"pid {os.getpid()} (first)"
        with pytest.raises(CompressError, match=r"E is being written by pid \d+ \(first\), which is still running"):
            with owned(out, "second"):
                pass
    assert not (tmp_path / ".E.lock").exists()


def test_atomic_dir_does_not_replace_what_appeared_meanwhile(tmp_path):
    from compress.common.errors import CompressError
    from compress.common.fileio import atomic_dir

    out = tmp_path / "E"
    with pytest.raises(CompressError, match="appeared while this command was writing it"):
        with atomic_dir(out, replace=False) as tmp:
            (tmp / "new.txt").write_text("new")
            out.mkdir()
            (out / "theirs.txt").write_text("theirs")
    assert [p.name for p in out.iterdir()] == ["theirs.txt"] and len(list(tmp_path.iterdir())) == 1
