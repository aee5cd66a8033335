"""A model on disk: its weights file and its sidecar, written and read as one unit.

The two files are two renames apart, so the unit is made of three rules:

* **The sidecar names its weights.** It records the sha256 of the weights file it was
  written with (``weights_sha256``); a reader hashes the very bytes it loads and refuses a
  pair that does not match (or re-reads it, when a writer finished in between).
* **Writers take turns and journal.** A writer encodes both files, takes the directory's
  lock, writes both into hidden temporary files and flushes them (a full disk fails here,
  with nothing changed), then — signals held off — renames the new sidecar to a journal
  (``.M.compress.json.pending``), the new weights into place, and the journal into place. The
  old weights are kept (hard-linked) until then, so a failure in these steps puts them back.
* **A reader completes an interrupted write.** Killed between the two last renames, the
  directory holds the new weights, the old sidecar and the journal naming the new weights'
  hash: the journal is the sidecar (:func:`compress.model.sidecar.read_sidecar` moves it into place).
  Killed earlier, the journal names other weights and is ignored; the old pair stands.

The next writer removes what a killed one left (hidden temporary files, a stale journal).
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.errors import CompressError
from ..common.fileio import locked, sha256_bytes, sync_dir, temp_name, write_error, write_hidden
from ..common.signals import deferred
from .sidecar import Sidecar, finish_journal, pending_path, read_sidecar, sidecar_path, sidecar_text
from .weights import check_weights_path, decode_weights, encode_weights, read_bytes

digest = sha256_bytes
READ_ATTEMPTS = 4


@dataclass
class ModelFiles:
    """A weights file as loaded, its sidecar (None if it has none) and the weights' sha256."""

    state: dict[str, np.ndarray]
    sidecar: Sidecar | None
    sha256: str


def check_output_places(weights: Path) -> None:
    """Refuse to write a model where its weights or its sidecar would have to replace a directory."""
    for p in (weights, sidecar_path(weights)):
        if p.is_dir():
            raise CompressError(f"cannot write {p}: it is a directory; nothing written")


def _leftovers(weights: Path) -> list[Path]:
    """What killed writers of this model left: hidden temporary files and a journal naming other weights."""
    names = (f".{weights.name}.", f".{sidecar_path(weights).name}.")
    found = [p for p in weights.parent.iterdir() if p.name.startswith(names) and p.name.endswith((".tmp", ".old"))]
    pending = pending_path(weights)
    return found + ([pending] if pending.exists() else [])


def _clean(paths) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            os.unlink(p)


def _keep_old(weights: Path) -> Path | None:
    """A hard link to the current weights, to put them back if the new ones cannot be completed."""
    if not weights.is_file():
        return None
    backup = temp_name(weights, ".old")
    try:
        os.link(weights, backup)
    except OSError:  # no hard links here: no way back once the weights are replaced (the journal stands)
        return None
    return backup


def _publish(weights: Path, w_tmp: Path, s_tmp: Path) -> None:
    """The three renames (journal, weights, sidecar), undone on failure; no signal splits them."""
    pending, existed, replaced = pending_path(weights), weights.is_file(), False
    with deferred():
        os.replace(s_tmp, pending)
        backup = None
        try:
            backup = _keep_old(weights)
            os.replace(w_tmp, weights)
            replaced = True
            os.replace(pending, sidecar_path(weights))
        except BaseException:
            if replaced and backup is not None:
                os.replace(backup, weights)
            elif replaced and not existed:
                os.unlink(weights)
            if not replaced or backup is not None or not existed:  # else the journal completes the new pair
                _clean([pending])
            _clean([backup] if backup is not None else [])
            raise
    _clean([backup] if backup is not None else [])
    sync_dir(weights.parent)


def write_model_files(path: str | os.PathLike, state: Mapping, sidecar: Sidecar | Mapping) -> Sidecar:
    """Write weights and sidecar as one unit (see the module's notes); returns the sidecar written,
    with ``weights_sha256`` set."""
    path = check_weights_path(path)
    return _write(path, encode_weights(dict(state), path), sidecar)


def _write(path: Path, data: bytes, sidecar: Sidecar | Mapping) -> Sidecar:
    sc = sidecar if isinstance(sidecar, Sidecar) else Sidecar.from_json(sidecar)
    sc = sc.replace(weights_sha256=digest(data))
    text = sidecar_text(sc).encode()
    check_output_places(path)
    staged: list[Path] = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path.parent):
            finish_journal(path)      # under the lock: an interrupted write of this model is completed first,
            _clean(_leftovers(path))  # then what writers that died left is removed
            staged.append(write_hidden(path, data))
            staged.append(write_hidden(sidecar_path(path), text))
            _publish(path, *staged)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        _clean(p for p in staged if p.exists())
    return sc


def _mismatch(path: Path, sc: Sidecar, sha: str) -> CompressError:
    return CompressError(
        f"{path} does not match its sidecar {sidecar_path(path).name}: the weights' sha256 is {sha[:12]}, the sidecar "
        f"was written with {sc.weights_sha256[:12]}. The weights were replaced after the sidecar was written; if "
        "that was on purpose, delete the sidecar's \"weights_sha256\" entry")


def _read(path: Path, sidecar_required: bool) -> tuple[bytes, Sidecar | None, str]:
    """The weights' bytes and the sidecar that goes with them, and their sha256; a writer finishing
    between the two reads is waited out by reading again."""
    for attempt in range(READ_ATTEMPTS):
        sc = read_sidecar(path, required=sidecar_required)
        data = read_bytes(path)
        sha = digest(data)
        if sc is None or sc.weights_sha256 is None or sc.weights_sha256 == sha:
            return data, sc, sha
        time.sleep(0.05 * (attempt + 1))
    decode_weights(data, path)  # not weights at all: say that rather than that they do not match
    raise _mismatch(path, sc, sha)


def read_model_files(path: str | os.PathLike, sidecar_required: bool = True) -> ModelFiles:
    """Weights and sidecar that belong together (the weights checked against the sidecar's hash)."""
    path = Path(path)
    data, sc, sha = _read(path, sidecar_required)
    return ModelFiles(decode_weights(data, path), sc, sha)


def copy_model_files(src: str | os.PathLike, dst: str | os.PathLike) -> Sidecar:
    """Copy a model (weights + sidecar) to ``dst`` as one unit (converting the weights' format if the
    suffixes differ)."""
    src, dst = Path(src), check_weights_path(dst)
    data, sc, _ = _read(src, True)
    state = decode_weights(data, src)  # checks what is copied
    return _write(dst, data if src.suffix == dst.suffix else encode_weights(state, dst), sc)


__all__ = ["ModelFiles", "write_model_files", "read_model_files", "copy_model_files", "check_output_places",
           "digest", "encode_weights", "pending_path"]
