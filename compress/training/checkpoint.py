"""Checkpoints of a training run, so that a run killed in its fifth hour resumes at its last epoch.

A checkpoint is a directory next to the output (``OUT.ckpt/``, :func:`checkpoint_path`) holding two
files, both written atomically (:func:`compress.common.fileio.atomic_path`):

* ``arrays-E.pdparams``: every array of the run's state after epoch ``E`` (weights, optimizer
  moments, statistics sums, keep-best weights), a plain name -> array dict read back through the
  restricted loader of :mod:`compress.model.weights` (a checkpoint never runs code);
* ``state.json``: the run's identity (configuration, data, architecture, the sha256 of the initial
  weights), the epoch, the numbers that are not arrays (history, scheduler step, schedule state,
  keep-best scores) and the name of its arrays file. It is written after the arrays and names
  them, so a kill at any moment leaves the previous epoch's pair or the new one, never a mix;
  older arrays files are removed after it.

There is no random-number-generator state to save: every epoch's randomness is a function of
(seed, epoch) (see :func:`compress.training.loop.epoch_seed` and the loader's per-sample seeds).

:func:`open_checkpoint` refuses a checkpoint of another run (one line naming what differs),
``resume`` without a checkpoint, and a leftover checkpoint when ``resume`` is not asked for (it
holds hours of work: resume it, or remove it). The workflow removes the checkpoint once its
final write succeeded (:func:`remove_checkpoint`).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.errors import CompressError
from ..common.fileio import json_default, write_json
from ..model.weights import load_weights, save_weights

VERSION = 1
STATE = "state.json"


def checkpoint_path(out: str | Path) -> Path:
    """Where the checkpoints of a run writing ``out`` live: ``OUT.ckpt/`` next to it."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def room_needed(model) -> int:
    """Bytes a training run of ``model`` writes at most at once: the output, and a checkpoint (weights, two
    optimizer moments, keep-best weights) beside the previous one while it is replaced: about 10x the weights."""
    return 10 * int(sum(int(p.numel()) * p.element_size() for p in model.parameters()))


def state_digest(state: dict) -> str:
    """sha256 of a state dict's names, dtypes, shapes and values (the identity of a run's initial weights)."""
    h = hashlib.sha256()
    for k in sorted(state):
        a = np.ascontiguousarray(state[k].numpy() if hasattr(state[k], "numpy") else state[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _plain(obj):
    """``obj`` as JSON gives it back (tuples as lists, numpy scalars as numbers)."""
    return json.loads(json.dumps(obj, default=json_default))


@dataclass
class Checkpointing:
    """A run's checkpoints: ``path`` (the directory), the run's ``identity`` (JSON), whether to ``resume``
    and whether this process writes them (``write``: rank 0 only under the launcher).

    ``resume`` None: resume a checkpoint of this very run if there is one, else start afresh (replacing
    whatever is there); for callers that are themselves re-run after an interruption (``sweep``, ``demo``).
    """

    path: Path
    identity: dict
    resume: bool | None = False
    write: bool = True

    def __post_init__(self):
        self.path = Path(self.path)
        self.identity = _plain(self.identity)

    def extend(self, identity: dict) -> None:
        """Add entries to the run's identity (the caller's own entries win, and come first)."""
        self.identity = _plain({**self.identity, **{k: v for k, v in identity.items() if k not in self.identity}})

    def save(self, epoch: int, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """The state after ``epoch`` (1-based) epochs: arrays first, then the state naming them."""
        if not self.write:
            return
        name = f"arrays-{epoch}.pdparams"
        if self.path.exists() and not self.path.is_dir():
            raise CompressError(f"cannot write the checkpoint {self.path}: it is a file; nothing written")
        new = not self.path.exists()
        try:
            save_weights(arrays, self.path / name)
            write_json(self.path / STATE, {"version": VERSION, "identity": self.identity, "epoch": epoch,
                                           "arrays": name, "meta": meta})
        except BaseException:
            if new:   # nothing of a first checkpoint that could not be written stays behind
                shutil.rmtree(self.path, ignore_errors=True)
            raise
        for old in [*self.path.glob("arrays-*.pdparams"), *self.path.glob(".*.tmp")]:  # older epochs, killed writes
            if old.name != name:
                old.unlink(missing_ok=True)

    def _read_state(self) -> dict:
        try:
            state = json.loads((self.path / STATE).read_text())
        except (OSError, ValueError) as e:
            raise CompressError(f"{self.path / STATE}: not a readable checkpoint ({e}); remove {self.path} to "
                                "start afresh") from None
        if not isinstance(state, dict) or state.get("version") != VERSION or "identity" not in state:
            raise CompressError(f"{self.path / STATE}: not a checkpoint this version writes; remove {self.path} "
                                "to start afresh")
        return state

    def load(self) -> tuple[int, dict, dict[str, np.ndarray]]:
        """(epochs done, meta, arrays) of the checkpoint, once :func:`open_checkpoint` accepted it."""
        state = self._read_state()
        return int(state["epoch"]), state["meta"], load_weights(self.path / str(state["arrays"]))

    def exists(self) -> bool:
        return (self.path / STATE).is_file()


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def _difference(saved: dict, current: dict, prefix: str = "") -> str | None:
    """The first entry where two identities differ, as ``name (checkpoint: a, this run: b)``."""
    for k in [*current, *(k for k in saved if k not in current)]:
        a, b = saved.get(k), current.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _difference(a, b, f"{prefix}{k}.")
            if found:
                return found
        elif a != b:
            show = [_short(json.dumps(v)) for v in (a, b)]
            return f"{prefix}{k} (checkpoint: {show[0]}, this run: {show[1]})"
    return None


def open_checkpoint(ck: Checkpointing | None) -> Checkpointing | None:
    """Check ``ck`` before training starts: returns it when its checkpoint is to be resumed, None when
    the run starts afresh; refuses (one line) what cannot go on."""
    if ck is None:
        return None
    if ck.resume is None:
        return _if_same_run(ck)
    if not ck.exists():
        if ck.resume:
            raise CompressError(f"nothing to resume: no checkpoint at {ck.path} (a run leaves one after each "
                                "epoch and removes it when it finishes); run without `resume`", param="resume")
        return None
    state = ck._read_state()
    if not ck.resume:
        raise CompressError(f"{ck.path} holds the checkpoint of an unfinished run (after epoch {state.get('epoch')}): "
                            f"continue it with `resume`, or remove {ck.path} to start afresh", param="resume")
    diff = _difference(state["identity"], ck.identity)
    if diff is not None:
        raise CompressError(f"{ck.path} is the checkpoint of a different run: {diff}; resume with the same "
                            f"command, or remove {ck.path} to start afresh", param="resume")
    return ck


def _if_same_run(ck: Checkpointing) -> Checkpointing | None:
    """``ck`` if it holds a readable checkpoint of this very run, else None (the run starts afresh)."""
    try:
        return ck if ck.exists() and _difference(ck._read_state()["identity"], ck.identity) is None else None
    except CompressError:
        return None


def remove_checkpoint(path: str | Path) -> None:
    """Remove a finished run's checkpoint directory (best effort: the output is already written)."""
    shutil.rmtree(path, ignore_errors=True)
