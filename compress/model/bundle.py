"""Models: architecture specs, building a model, loading and saving a model with its sidecar.

An architecture is named by a shipped name (``resnet_tiny``), ``module:callable`` or
``file.py:callable``. What a sidecar names is untrusted and goes through
:mod:`compress.model.trust` before anything is imported. Weights are read by
:mod:`compress.model.weights` (never by unpickling code); the sidecar by :mod:`compress.model.sidecar`.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
import os
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paddle

from . import trust
from .architectures import ARCHITECTURES
from ..common.errors import CompressError
from ..common.fileio import not_a_file
from ..common.layers import probe_forward
from .sidecar import Sidecar, check_input_shape, sidecar_path
from .storage import read_model_files, write_model_files
from ..graph.surgery import remove_blocks, remove_branches
from .weights import apply_weights, check_weights_path

DEFAULT_INPUT_SHAPE = (3, 224, 224)


@dataclass
class ArchSpec:
    """Where a model's code lives: a shipped name, ``module:callable`` or ``file.py:callable``."""

    spec: str
    kwargs: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"spec": self.spec, "kwargs": self.kwargs}

    @classmethod
    def from_json(cls, d: dict) -> "ArchSpec":
        return cls(d["spec"], d.get("kwargs", {}))


def parse_kwargs(text: str | None) -> dict:
    """The architecture's keyword arguments from JSON text (``arch_kwargs``)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise CompressError(f"`arch_kwargs` is not valid JSON: {e.msg} at position {e.pos}", param="arch_kwargs") from None
    if not isinstance(value, dict):
        raise CompressError("`arch_kwargs` must be a JSON object, e.g. '{\"depth\": 8}'", param="arch_kwargs")
    return value


def resolve_arch(spec: str, trusted: bool = True, near: Path | None = None):
    """Return the callable that builds the model.

    ``trusted=True``: the user named ``spec`` themselves (``--arch`` or a Python call);
    a spec that a sidecar could not name alone is then remembered as trusted
    (:func:`compress.model.trust.remember`). ``trusted=False``: ``spec`` comes from a sidecar
    (next to a model in ``near``) and the rule of :mod:`compress.model.trust` applies before
    anything is imported.
    """
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
        folder = str(file.resolve().parent)   # as when the file is run: its sibling modules import
        sys.path.insert(0, folder)
        try:
            s.loader.exec_module(module)
        except Exception as e:
            del sys.modules[mod_name]
            raise CompressError(f"cannot import {file}: {type(e).__name__}: {e}") from None
        finally:
            if folder in sys.path:
                sys.path.remove(folder)
    return module


def canonical_spec(spec: str) -> str:
    """How a spec is stored in a sidecar: a ``.py`` file by its absolute path, so the model
    loads from any working directory."""
    target, sep, name = spec.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{Path(target).resolve()}:{name}"
    return spec


def default_input_shape(spec: str) -> tuple[int, int, int] | None:
    return tuple(ARCHITECTURES[spec][1]) if spec in ARCHITECTURES else None


def parse_input_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise CompressError(f"`input_shape` must be C,H,W with positive integers, got {text!r}", param="input_shape")
    return check_input_shape(shape, "input_shape")


CLASS_KWARGS = ("num_classes", "class_num")   # how architectures name their class count (paddle.vision, PaddleClas)


def class_kwarg_names(factory) -> list[str]:
    """The keyword(s) under which ``factory`` may take the class count: the one its signature names;
    for a factory that only passes ``**kwargs`` on (``paddle.vision.models.resnet18``), both, to try in
    turn; none if it takes neither."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C extension without a signature
        return []
    named = [n for n in CLASS_KWARGS if n in params]
    if named:
        return named[:1]
    return list(CLASS_KWARGS) if any(p.kind is p.VAR_KEYWORD for p in params.values()) else []


def check_class_kwargs(kwargs: dict, num_classes: int) -> None:
    """Refuse `arch_kwargs` that set a class count other than the data's."""
    for name in CLASS_KWARGS:
        if name in kwargs and kwargs[name] != num_classes:
            raise CompressError(f"`arch_kwargs` sets {name} {json.dumps(kwargs[name])} but the data has {num_classes} "
                                f"classes; leave {name} out (it is filled in from the data)", param="arch_kwargs")


def _where(e: BaseException) -> str:
    """``file:line`` of the innermost frame an exception was raised in (the user's code, usually)."""
    frames = traceback.extract_tb(e.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _call_factory(factory, arch: ArchSpec, kwargs: dict):
    """``factory(**kwargs)``; an exception raised inside the factory's own code (not a wrong keyword) becomes one
    line naming the factory, the exception and where it was raised."""
    try:
        return factory(**kwargs)
    except TypeError:
        raise
    except CompressError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's model code can raise anything
        msg = " ".join(str(e).split())[:300]
        raise CompressError(f"building the model {arch.spec} failed in its own code: {type(e).__name__}: {msg} "
                            f"(at {_where(e)})", param="arch") from None


def _construct(factory, arch: ArchSpec, kwargs: dict, num_classes: int | None):
    """``factory(**kwargs)``, with the class count filled in where the factory takes it and the kwargs lack it."""
    tries = [] if num_classes is None or any(n in kwargs for n in CLASS_KWARGS) else class_kwarg_names(factory)
    for name in tries:
        try:
            return _call_factory(factory, arch, {**kwargs, name: num_classes})
        except TypeError as e:
            if len(tries) == 1 or name not in str(e):  # named in the signature, or failing for another reason
                raise CompressError(f"cannot build {arch.spec} with `arch_kwargs` {json.dumps(arch.kwargs)} and "
                                    f"{name}={num_classes}: {e} (at {_where(e)})", param="arch_kwargs") from None
    try:
        return _call_factory(factory, arch, kwargs)
    except TypeError as e:
        raise CompressError(f"cannot build {arch.spec} with `arch_kwargs` {json.dumps(arch.kwargs)}: {e} "
                            f"(at {_where(e)})", param="arch_kwargs") from None


def _no_download(factory, arch: ArchSpec, kwargs: dict) -> dict:
    """Weights come from the user's file, never from the network: a factory with a ``pretrained`` parameter that
    the kwargs leave unset is built with ``pretrained=False`` (said on the ``compress`` logger when its default
    was anything else)."""
    if "pretrained" in kwargs:
        return kwargs
    try:
        param = inspect.signature(factory).parameters.get("pretrained")
    except (TypeError, ValueError):
        return kwargs
    if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
        return kwargs
    if param.default is not False:
        logging.getLogger("compress").warning(
            f"{arch.spec} defaults to pretrained={param.default!r}; built with pretrained=False (compress never "
            "downloads weights: they come from the model file you give)")
    return {**kwargs, "pretrained": False}


def build_model(arch: ArchSpec, input_shape, num_classes: int | None = None, trusted: bool = True,
                near: Path | None = None):
    """Instantiate the architecture. ``num_classes`` is passed as ``num_classes`` (or PaddleClas'
    ``class_num``) when the factory takes it and the kwargs do not set it; shipped architectures also
    get ``in_chans`` (and the ViT ``img_size``) from ``input_shape``."""
    if not isinstance(arch.kwargs, dict):
        raise CompressError(f"the architecture's kwargs must be a JSON object, got {type(arch.kwargs).__name__}")
    if arch.kwargs.get("pretrained"):
        raise CompressError(f"{arch.spec} with pretrained=true would download weights at run time, which compress "
                            "never does; give the pretrained weights file instead, as the model to start from")
    factory = resolve_arch(arch.spec, trusted=trusted, near=near)
    kwargs = dict(arch.kwargs)
    if arch.spec in ARCHITECTURES:
        kwargs.setdefault("in_chans", int(input_shape[0]))
        if arch.spec == "vit_tiny":
            kwargs.setdefault("img_size", int(input_shape[1]))
    model = _construct(factory, arch, _no_download(factory, arch, kwargs), num_classes)
    if not isinstance(model, paddle.nn.Layer):
        raise CompressError(f"{arch.spec} returned a {type(model).__name__}, not a paddle.nn.Layer")
    return model


def output_width(model, input_shape) -> int:
    out = probe_forward(model, paddle.zeros([2, *input_shape], dtype="float32"))
    if isinstance(out, (list, tuple)):
        out = out[0]
    if out.ndim != 2:
        raise CompressError(f"the model's output has shape {list(out.shape)}; a classifier's logits [batch, classes] are needed")
    return int(out.shape[1])


def check_num_classes(model, input_shape, num_classes: int) -> None:
    width = output_width(model, input_shape)
    if width != num_classes:
        raise CompressError(f"the model outputs {width} logits but the data has {num_classes} classes "
                            "(set num_classes in `arch_kwargs`)", param="arch_kwargs")


@dataclass
class ModelBundle:
    """A model together with its sidecar: everything compress knows about it."""

    model: Any
    sidecar: Sidecar
    path: Path | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.sidecar.input_shape)

    @property
    def num_classes(self) -> int:
        return int(self.sidecar.num_classes)

    @property
    def arch(self) -> ArchSpec:
        return ArchSpec.from_json(self.sidecar.arch)


def _sidecar_for(path: Path, sidecar: Sidecar | None, arch: str | None, arch_kwargs: dict | None,
                 input_shape) -> Sidecar:
    """The model's sidecar, with what the caller gave overriding it (an ``arch`` makes it optional)."""
    sidecar = sidecar or Sidecar.from_json({})
    if arch is not None:
        sidecar.arch = ArchSpec(arch, arch_kwargs or {}).to_json()
    elif sidecar.arch is None:
        raise CompressError(f"{sidecar_path(path)}: not a valid sidecar: it names no arch; give `arch`", param="arch")
    if input_shape is not None:
        sidecar.input_shape = list(check_input_shape(tuple(input_shape), "input_shape"))
    if sidecar.input_shape is None:
        sidecar.input_shape = list(default_input_shape(sidecar.spec) or DEFAULT_INPUT_SHAPE)
    return sidecar


def load_model(path: str | os.PathLike, arch: str | None = None, arch_kwargs: dict | None = None,
               input_shape=None, num_classes: int | None = None) -> ModelBundle:
    """Load a model written by compress (weights + sidecar), or weights with an explicit ``arch``.

    Pruned models come back pruned: the architecture is built, the blocks and branches the
    sidecar lists as removed are taken out, then the weights are loaded. Weights and
    sidecar are read as one unit (:mod:`compress.model.storage`): weights that are not the
    ones the sidecar was written with are refused.
    """
    path = check_weights_path(path)
    if not path.is_file():
        raise not_a_file(path)
    files = read_model_files(path, sidecar_required=arch is None)
    sidecar = _sidecar_for(path, files.sidecar, arch, arch_kwargs, input_shape)
    model = build_model(ArchSpec.from_json(sidecar.arch), sidecar.input_shape, num_classes or sidecar.num_classes,
                        trusted=arch is not None, near=path.parent)
    if sidecar.removed_blocks:
        remove_blocks(model, sidecar.removed_blocks)
    if sidecar.removed_branches:
        remove_branches(model, sidecar.removed_branches)
    apply_weights(model, files.state, str(path))
    if sidecar.num_classes is None:
        sidecar.num_classes = output_width(model, sidecar.input_shape)
    model.eval()
    return ModelBundle(model, sidecar, path)


def save_model(model, path: str | os.PathLike, sidecar: Sidecar | Mapping) -> Path:
    """Write weights and sidecar as one unit (:func:`compress.model.storage.write_model_files`): a reader
    sees the old pair or the new one, never a mix."""
    path = check_weights_path(path)
    write_model_files(path, model.state_dict(), sidecar)
    return path
