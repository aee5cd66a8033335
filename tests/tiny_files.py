"""Small model files on disk for the reliability tests: a TinyCNN (1x8x8 input, digits) with its sidecar,
fault injection for file writes, and a look at the processes a command leaves behind."""
from __future__ import annotations

import builtins
import errno
import io
import os
import signal
from pathlib import Path

import numpy as np

TINY_SHAPE = [1, 8, 8]


def tiny_sidecar(width: int = 4, **extra) -> dict:
    return {"format": "compress-sidecar/1", "arch": {"spec": "tiny_models:TinyCNN", "kwargs": {"width": width}},
            "input_shape": list(TINY_SHAPE), "num_classes": 10, "data": {"source": "digits"},
            "preprocess": {"layout": "NCHW", "range": [0, 1], "mean": 0.5, "std": 0.5}, **extra}


def write_tiny(path, width: int = 4, seed: int = 0, **extra) -> Path:
    """A TinyCNN of ``width`` with random weights (seeded) and its sidecar at ``path``."""
    import paddle

    from compress.model.bundle import ArchSpec, build_model, save_model

    paddle.seed(seed)
    model = build_model(ArchSpec("tiny_models:TinyCNN", {"width": width}), tuple(TINY_SHAPE), 10)
    return save_model(model, Path(path), tiny_sidecar(width, **extra))


def snapshot(*paths) -> dict:
    """Bytes of each path that exists (to check a file was left exactly as it was)."""
    return {str(p): Path(p).read_bytes() for p in paths if Path(p).is_file()}


def hidden(directory) -> list[str]:
    """Hidden entries (temporary files and directories, journals, locks) left in ``directory``."""
    return sorted(p.name for p in Path(directory).iterdir() if p.name.startswith("."))


def full_disk(monkeypatch, root, after_bytes: int = 0):
    """From now on, writing more than ``after_bytes`` in total to files under ``root`` fails with ENOSPC."""
    root = str(Path(root).resolve())
    real_open = builtins.open
    written = [0]

    class Full:
        def __init__(self, f):
            self._f = f

        def write(self, b):
            written[0] += len(b)
            if written[0] > after_bytes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self._f.write(b)

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self._f.close()

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") \
                and os.path.abspath(file).startswith(root):
            return Full(f)
        return f

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    return written


# --------------------------------------------------------------------------- faults between the steps of a write
def hook_steps(monkeypatch, steps, k: int, fault):
    """Call ``fault()`` just before the k-th call of any of ``steps`` ((module, function name) pairs: the
    steps of a write, e.g. ``os.replace``); returns a one-item list counting the calls."""
    calls = [0]
    for mod, name in steps:
        real = getattr(mod, name)

        def hooked(*a, _real=real, **kw):
            calls[0] += 1
            if calls[0] == k:
                fault()
            return _real(*a, **kw)
        monkeypatch.setattr(mod, name, hooked)
    return calls


def killed_at_step(monkeypatch, steps, k: int, write) -> bool:
    """Fork; the child runs ``write()`` and SIGKILLs itself just before the k-th step. True if it finished."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            hook_steps(monkeypatch, steps, k, lambda: os.kill(os.getpid(), signal.SIGKILL))
            write()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return not os.WIFSIGNALED(status)


# --------------------------------------------------------------------------- processes
def marked_processes(mark: str) -> list[int]:
    """Live processes whose environment carries ``COMPRESS_TEST_MARK=mark`` (a command and every child it
    started inherit it, so after the command has exited any such process is an orphan it left running)."""
    needle = f"COMPRESS_TEST_MARK={mark}".encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                state = (d / "stat").read_text().rpartition(")")[2].split()[0]
                if state != "Z":
                    found.append(int(d.name))
        except OSError:
            continue
    return found


def state_matches(state: dict, reference) -> bool:
    """Whether a loaded state dict equals ``reference`` (a model's state dict or another loaded one)."""
    ref = {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in reference.items()}
    return set(state) == set(ref) and all(np.array_equal(state[k], ref[k]) for k in ref)
