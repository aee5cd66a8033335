"""Weight files, read without running code.

A ``.pdparams`` file is a pickle, and ``paddle.load`` would run whatever code a
crafted one carries. Here weights are read by a restricted unpickler that
rebuilds numpy arrays, numbers, strings, lists and dicts and refuses anything
else. ``.safetensors`` files are read with the safetensors library.
"""
from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path
from typing import Any

import numpy as np

from ..common.errors import CompressError
from ..common.fileio import atomic_path, not_a_file

WEIGHT_SUFFIXES = (".pdparams", ".safetensors")
_NUMERIC = "biufc"  # numpy dtype kinds a weight may have: bool, integers, floats, complex

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("builtins", "tuple"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: weight files may hold arrays only")


def _check_array(name: str, v: np.ndarray, path) -> None:
    """Weights are numbers, and finite: a NaN or an infinity would only surface later, far from its cause."""
    if v.dtype.kind not in _NUMERIC:
        raise CompressError(f"{path}: {name} is not a numeric array (dtype {v.dtype}); not a weights file")
    if v.dtype.kind in "fc" and not np.isfinite(v).all():
        bad = int(v.size - np.isfinite(v).sum())
        raise CompressError(f"{path}: {name} holds NaN or infinite values ({bad} of {v.size}); refusing a broken "
                            "model (was it trained to divergence?)")


def _state_from_obj(obj: Any, path) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise CompressError(f"{path}: not a weights file (holds a {type(obj).__name__}, not a name->array dict)")
    state = {}
    for k, v in obj.items():
        if k == "StructuredToParameterName@@":  # paddle's own bookkeeping entry
            continue
        if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], np.ndarray):  # older (name, array) pairs
            v = v[1]
        if not isinstance(k, str) or not isinstance(v, np.ndarray):
            raise CompressError(f"{path}: not a weights file (entry {k!r} is a {type(v).__name__}, not an array)")
        _check_array(k, v, path)
        state[k] = v
    return state


def _load_safetensors(data: bytes, path) -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load  # optional format: only .safetensors files need it

        state = dict(load(data))
    except Exception as e:  # safetensors raises its own error types
        raise CompressError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    return _state_from_obj(state, path)


def decode_weights(data: bytes, path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A state dict from the bytes of a weights file named ``path`` (its suffix says the format)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return _load_safetensors(data, path)
    if not data:
        raise CompressError(f"{path}: empty file, not a weights file")
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as e:
        msg = str(e)
        if msg.startswith("refusing"):
            raise CompressError(f"{path}: {msg}") from None
        raise CompressError(f"{path}: not a weights file or truncated ({msg})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise CompressError(f"{path}: not a weights file or truncated ({type(e).__name__}: {e})") from None
    except (MemoryError, OverflowError) as e:   # a length or a shape far beyond the file's size
        raise CompressError(f"{path}: not a weights file: it declares data far larger than its {len(data):,} bytes "
                            f"({type(e).__name__})") from None
    except RecursionError:
        raise CompressError(f"{path}: not a weights file: nested too deeply") from None
    return _state_from_obj(obj, path)


MAX_WEIGHTS_GB_ENV = "COMPRESS_MAX_WEIGHTS_GB"
MAX_WEIGHTS_GB = 8.0    # the largest weights file read (edge models are far smaller); the variable above raises it


_PICKLE_OPCODES = {op.code.encode("latin-1") for op in pickletools.opcodes}   # what a pickle can start with


def _check_head(path: Path, size: int) -> None:
    """Refuse, from its size and first bytes and before reading it whole, a file that cannot be weights: over the
    cap, not a pickle (its first byte is no pickle opcode: protocol 2+ opens with 0x80), or a safetensors header
    longer than the file."""
    cap = float(os.environ.get(MAX_WEIGHTS_GB_ENV) or MAX_WEIGHTS_GB)
    if size > cap * 1e9:
        raise CompressError(f"{path}: {size / 1e9:.1f} GB, larger than the {cap:g} GB a weights file may be "
                            f"({MAX_WEIGHTS_GB_ENV} raises the cap); not read")
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix == ".safetensors":
        if len(head) == 8 and int.from_bytes(head, "little") > size - 8:
            raise CompressError(f"{path}: not a safetensors file (its header claims more bytes than the file has)")
    elif head and head[:1] not in _PICKLE_OPCODES:
        raise CompressError(f"{path}: not a weights file (not a pickle: it starts with {head[:4]!r}); not read")


def read_bytes(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path)
    try:
        _check_head(path, path.stat().st_size)
        return path.read_bytes()
    except OSError as e:
        raise CompressError(f"{path}: cannot read it ({e.strerror or e})") from None


def load_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a state dict from ``.pdparams`` (restricted pickle) or ``.safetensors`` without running code.

    Every entry must be a numeric array without NaN or infinity.
    """
    return decode_weights(read_bytes(path), path)


def encode_weights(state: dict, path: str | os.PathLike) -> bytes:
    """The bytes of a weights file named ``path``: ``.pdparams`` (readable by ``paddle.load``) or ``.safetensors``."""
    arrays = {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in state.items()}
    if Path(path).suffix == ".safetensors":
        from safetensors.numpy import save  # optional format: only .safetensors files need it

        return save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return pickle.dumps(arrays, protocol=4)


def save_weights(state: dict, path: str | os.PathLike) -> None:
    """Write a state dict atomically (weights alone; a model's weights and sidecar go through
    :func:`compress.model.storage.write_model_files`)."""
    data = encode_weights(state, path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def check_weights_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix not in WEIGHT_SUFFIXES:
        raise CompressError(f"{path}: weights files end in .pdparams or .safetensors")
    return path


def _few(keys: list[str]) -> str:
    return f"{', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"


def _shape(v) -> list[int]:
    return [int(d) for d in v.shape]


def weight_mismatches(own: dict, state: dict[str, np.ndarray]) -> tuple[list[str], list[str], list[str]]:
    """The keys of ``own`` (a model's state dict) missing from ``state``, those of ``state`` unexpected,
    and the keys both have with different shapes."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [k for k in own if k in state and _shape(state[k]) != _shape(own[k])]
    return missing, unexpected, shaped


def mismatch_message(own: dict, state: dict, source: str, missing, unexpected, shaped) -> str:
    """The one line refusing weights that do not match the architecture (each list with its first keys)."""
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} ({_few(missing)})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} ({_few(unexpected)})")
        return f"{source}: weights do not match the architecture: {'; '.join(parts)}"
    bad = [f"{k} {_shape(state[k])} vs {_shape(own[k])}" for k in shaped]
    count = f" ({len(bad)} keys)" if len(bad) > 3 else ""
    return f"{source}: weights do not match the architecture: shape of {', '.join(bad[:3])}{count}"


def apply_weights(model, state: dict[str, np.ndarray], source: str, keep_own: frozenset = frozenset()) -> None:
    """Load ``state`` into ``model``, refusing any missing, unexpected or mis-shaped key.

    ``keep_own``: keys whose shape may differ; the model keeps its own (freshly initialised) values
    there (a pretrained checkpoint's classifier, see :mod:`compress.model.pretrained`).
    """
    own = model.state_dict()
    missing, unexpected, shaped = weight_mismatches(own, state)
    shaped = [k for k in shaped if k not in keep_own]
    if missing or unexpected or shaped:
        raise CompressError(mismatch_message(own, state, source, missing, unexpected, shaped))
    kept = {k for k in keep_own if k in own and _shape(state[k]) != _shape(own[k])}
    model.set_state_dict({k: own[k].numpy() if k in kept else state[k].astype(str(own[k].numpy().dtype), copy=False)
                          for k in own})
