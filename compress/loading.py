"""Model loading: architecture specs, safe weight files, sidecars, whole models.

A ``.pdparams`` file is a pickle, and ``paddle.load`` would run whatever code a
crafted one carries. Here weights are read by a restricted unpickler that
rebuilds numpy arrays, numbers, strings, lists and dicts and refuses anything
else. ``.safetensors`` files are read with the safetensors library.
"""
from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import trust
from .errors import CompressError
from .fileio import atomic_path, write_json

SIDECAR_SUFFIX = ".compress.json"
SIDECAR_FORMAT = "compress-sidecar/1"
WEIGHT_SUFFIXES = (".pdparams", ".safetensors")


# --------------------------------------------------------------------------- safe weights
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


def _state_from_obj(obj: Any, path: Path) -> dict[str, np.ndarray]:
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
        state[k] = v
    return state


def load_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a state dict from ``.pdparams`` (restricted pickle) or ``.safetensors`` without running code."""
    path = Path(path)
    if not path.is_file():
        raise CompressError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file

            return dict(load_file(str(path)))
        except Exception as e:  # safetensors raises its own error types
            raise CompressError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    data = path.read_bytes()
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
    return _state_from_obj(obj, path)


def save_weights(state: dict, path: str | os.PathLike) -> None:
    """Write a state dict atomically, as ``.pdparams`` (readable by ``paddle.load``) or ``.safetensors``."""
    path = Path(path)
    arrays = {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in state.items()}
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
        else:
            with open(tmp, "wb") as f:
                pickle.dump(arrays, f, protocol=4)


def check_weights_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix not in WEIGHT_SUFFIXES:
        raise CompressError(f"{path}: weights files end in .pdparams or .safetensors")
    return path


# --------------------------------------------------------------------------- architectures
@dataclass
class ArchSpec:
    """Where a model's code lives: a shipped name, ``module:callable`` or ``file.py:callable``."""

    spec: str
    kwargs: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"spec": self.spec, "kwargs": self.kwargs}


def parse_kwargs(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise CompressError(f"--arch-kwargs is not valid JSON: {e.msg} at position {e.pos}") from None
    if not isinstance(value, dict):
        raise CompressError("--arch-kwargs must be a JSON object, e.g. '{\"depth\": 8}'")
    return value


def resolve_arch(spec: str, trusted: bool = True, near: Path | None = None):
    """Return the callable that builds the model.

    ``trusted=True``: the user named ``spec`` themselves (``--arch`` or a Python call);
    a spec that a sidecar could not name alone is then remembered as trusted
    (:func:`compress.trust.remember`). ``trusted=False``: ``spec`` comes from a sidecar
    (next to a model in ``near``) and the rule of :mod:`compress.trust` applies before
    anything is imported.
    """
    from .architectures import ARCHITECTURES

    if spec in ARCHITECTURES:
        return ARCHITECTURES[spec][0]
    if ":" not in spec:
        known = ", ".join(sorted(ARCHITECTURES))
        raise CompressError(f"unknown architecture {spec!r}: use one of {known}, or module:callable, or file.py:callable")
    target, _, name = spec.rpartition(":")
    how = None if trusted else trust.check_sidecar_arch(spec, None, near)
    if target.endswith(".py"):
        module = _import_file(spec, Path(target))
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise CompressError(f"unknown architecture {spec!r}: cannot import {target} ({e})") from None
    obj = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise CompressError(f"unknown architecture {spec!r}: {target} has no {name}")
    if how is not None:
        trust.check_imported(spec, how, obj)
    if not callable(obj):
        raise CompressError(f"unknown architecture {spec!r}: {name} is not callable")
    if trusted:
        trust.remember_if_needed(spec)
    return obj


def _import_file(spec: str, file: Path):
    if not file.is_file():
        raise CompressError(f"unknown architecture {spec!r}: {file} does not exist")
    mod_name = f"compress_user_arch_{abs(hash(str(file.resolve())))}"
    module = sys.modules.get(mod_name)
    if module is None:
        s = importlib.util.spec_from_file_location(mod_name, file)
        module = importlib.util.module_from_spec(s)
        sys.modules[mod_name] = module
        try:
            s.loader.exec_module(module)
        except Exception as e:
            del sys.modules[mod_name]
            raise CompressError(f"cannot import {file}: {type(e).__name__}: {e}") from None
    return module


def canonical_spec(spec: str) -> str:
    """How a spec is stored in a sidecar: a ``.py`` file by its absolute path, so the model
    loads from any working directory."""
    target, sep, name = spec.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{Path(target).resolve()}:{name}"
    return spec


def default_input_shape(spec: str) -> tuple[int, int, int] | None:
    from .architectures import ARCHITECTURES

    return tuple(ARCHITECTURES[spec][1]) if spec in ARCHITECTURES else None


def parse_input_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise CompressError(f"--input-shape must be C,H,W with positive integers, got {text!r}")
    return shape


def build_model(arch: ArchSpec, input_shape, num_classes: int | None = None, trusted: bool = True,
                near: Path | None = None):
    """Instantiate the architecture; shipped ones get ``num_classes``/``in_chans`` filled in."""
    from .architectures import ARCHITECTURES

    if not isinstance(arch.kwargs, dict):
        raise CompressError(f"the architecture's kwargs must be a JSON object, got {type(arch.kwargs).__name__}")
    if arch.kwargs.get("pretrained"):
        raise CompressError(f"{arch.spec} with pretrained=true would download weights at run time, which compress "
                            "never does; give the pretrained weights file instead "
                            "(`compress train PRETRAINED.pdparams --arch ...`)")
    factory = resolve_arch(arch.spec, trusted=trusted, near=near)
    kwargs = dict(arch.kwargs)
    if arch.spec in ARCHITECTURES:
        if num_classes is not None:
            kwargs.setdefault("num_classes", num_classes)
        kwargs.setdefault("in_chans", int(input_shape[0]))
        if arch.spec == "vit_tiny":
            kwargs.setdefault("img_size", int(input_shape[1]))
    try:
        model = factory(**kwargs)
    except TypeError as e:
        raise CompressError(f"cannot build {arch.spec} with --arch-kwargs {json.dumps(arch.kwargs)}: {e}") from None
    import paddle

    if not isinstance(model, paddle.nn.Layer):
        raise CompressError(f"{arch.spec} returned a {type(model).__name__}, not a paddle.nn.Layer")
    return model


def output_width(model, input_shape) -> int:
    import paddle

    from .blocks import probe_forward

    out = probe_forward(model, paddle.zeros([2, *input_shape], dtype="float32"))
    if isinstance(out, (list, tuple)):
        out = out[0]
    if out.ndim != 2:
        raise CompressError(f"the model's output has shape {list(out.shape)}; a classifier's logits [batch, classes] are needed")
    return int(out.shape[1])


def check_num_classes(model, input_shape, num_classes: int) -> None:
    width = output_width(model, input_shape)
    if width != num_classes:
        raise CompressError(f"the model outputs {width} logits but the data has {num_classes} classes (set num_classes in --arch-kwargs)")


def apply_weights(model, state: dict[str, np.ndarray], source: str) -> None:
    """Load ``state`` into ``model``, refusing any missing, unexpected or mis-shaped key."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} ({', '.join(unexpected[:3])}{', ...' if len(unexpected) > 3 else ''})")
        raise CompressError(f"{source}: weights do not match the architecture: {'; '.join(parts)}")
    bad = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own if list(state[k].shape) != list(own[k].shape)]
    if bad:
        raise CompressError(f"{source}: weights do not match the architecture: shape of {', '.join(bad[:3])}")
    model.set_state_dict({k: state[k].astype(str(own[k].numpy().dtype), copy=False) for k in own})


# --------------------------------------------------------------------------- sidecars
def sidecar_path(weights: str | os.PathLike) -> Path:
    p = Path(weights)
    return p.with_name(p.stem + SIDECAR_SUFFIX) if p.suffix in WEIGHT_SUFFIXES else p.with_name(p.name + SIDECAR_SUFFIX)


def read_sidecar(weights: str | os.PathLike, required: bool = True) -> dict | None:
    path = sidecar_path(weights)
    if not path.is_file():
        if required:
            raise CompressError(f"{weights}: no sidecar {path.name} next to it; use a model written by compress "
                                "(`compress train` writes one), or give --arch where the command has it")
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CompressError(f"{path}: not a valid sidecar ({e})") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise CompressError(f"{path}: not a compress sidecar (format is not {SIDECAR_FORMAT})")
    return data


@dataclass
class ModelBundle:
    """A model together with its sidecar: everything compress knows about it."""

    model: Any
    sidecar: dict
    path: Path | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.sidecar["input_shape"])

    @property
    def num_classes(self) -> int:
        return int(self.sidecar["num_classes"])


def load_model(path: str | os.PathLike, arch: str | None = None, arch_kwargs: dict | None = None,
               input_shape=None, num_classes: int | None = None) -> ModelBundle:
    """Load a model written by compress (weights + sidecar), or weights with an explicit ``arch``.

    Pruned models come back pruned: the architecture is built, the blocks the
    sidecar lists as removed are taken out, then the weights are loaded.
    """
    path = check_weights_path(path)
    if not path.is_file():
        raise CompressError(f"{path}: no such file")
    sidecar = read_sidecar(path, required=arch is None) or {}
    sidecar = dict(sidecar) if sidecar else {"format": SIDECAR_FORMAT}
    if arch is not None:
        sidecar["arch"] = ArchSpec(arch, arch_kwargs or {}).to_json()
    if input_shape is not None:
        sidecar["input_shape"] = list(input_shape)
    sidecar.setdefault("input_shape", list(default_input_shape(sidecar["arch"]["spec"]) or (3, 224, 224)))
    spec = ArchSpec(sidecar["arch"]["spec"], sidecar["arch"].get("kwargs", {}))
    state = load_weights(path)
    model = build_model(spec, sidecar["input_shape"], num_classes or sidecar.get("num_classes"), trusted=arch is not None,
                        near=path.parent)
    removed = sidecar.get("removed_blocks") or []
    if removed:
        from .surgery import remove_blocks

        remove_blocks(model, removed)
    apply_weights(model, state, str(path))
    sidecar.setdefault("num_classes", output_width(model, sidecar["input_shape"]))
    model.eval()
    return ModelBundle(model, sidecar, path)


def save_model(model, path: str | os.PathLike, sidecar: dict) -> Path:
    """Write weights and sidecar; each appears complete or not at all."""
    path = check_weights_path(path)
    sidecar = {"format": SIDECAR_FORMAT, **{k: v for k, v in sidecar.items() if k != "format"}}
    save_weights(model.state_dict(), path)
    write_json(sidecar_path(path), sidecar)
    return path
