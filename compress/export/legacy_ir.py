"""Tracing into the legacy program (``model.pdmodel``) on Paddle 3.3.1: the ops it can no longer trace.

Paddle 3.3.1 binds about 55 public functions (``paddle.matmul``, ``paddle.multiply``, ``paddle.sum``,
``F.gelu``, ``F.sigmoid``, ...) straight to C++ ``_C_ops`` when it is imported
(``paddle/base/dygraph/generated_tensor_methods_patch.py``: ``funcs_map``/``nn_funcs_map``). Those
C ops accept a dygraph Tensor or a PIR ``Value``, never a legacy ``Variable``, so tracing a model with
``FLAGS_enable_pir_api=0`` fails on them: ``TypeError: (InvalidType) matmul(): argument (position 1)
must be Value, but got Variable`` (every ViT, with ``F.gelu`` or attention; plain CNNs trace fine).
The old Python implementations, with their ``LayerHelper`` branch, were removed.

:func:`install` re-adds a legacy branch for the ops vision models use: a wrapper that appends the
legacy op (``matmul_v2``, ``gelu``, ``elementwise_mul``, ``reduce_sum``, ...) while tracing in legacy
static mode and calls the original C op otherwise. It is only ever called in the export's legacy
subprocess (:mod:`compress.export.legacy_worker`), never in a PIR-mode process.
"""
from __future__ import annotations

import sys

from paddle import _C_ops
from paddle.base import framework
from paddle.base.dygraph import generated_tensor_methods_patch as _generated
from paddle.base.layer_helper import LayerHelper

UNARY_OPS = ("exp", "sqrt", "rsqrt", "tanh", "sigmoid", "abs", "log", "floor", "ceil", "sin", "cos", "round")


def legacy_static() -> bool:
    return not framework.in_dygraph_mode() and not framework.in_pir_mode()


def _append(op: str, inputs: dict, like, attrs: dict | None = None, name=None):
    helper = LayerHelper(op, name=name)
    out = helper.create_variable_for_type_inference(dtype=like.dtype)
    helper.append_op(type=op, inputs=inputs, outputs={"Out": [out]}, attrs=attrs or {})
    return out


def _unary(op):
    def f(x, name=None):
        return _append(op, {"X": [x]}, x, name=name)
    return f


def _elementwise(op):
    def f(x, y, name=None):
        return _append(op, {"X": [x], "Y": [y]}, x, {"axis": -1}, name)
    return f


def _matmul(x, y, transpose_x=False, transpose_y=False, name=None):
    return _append("matmul_v2", {"X": [x], "Y": [y]}, x, {"trans_x": bool(transpose_x), "trans_y": bool(transpose_y)},
                   name)


def _bmm(x, y, name=None):
    return _append("bmm", {"X": [x], "Y": [y]}, x, name=name)


def _gelu(x, approximate=False, name=None):
    return _append("gelu", {"X": [x]}, x, {"approximate": bool(approximate)}, name)


def _reduce_sum(x, axis=None, dtype=None, keepdim=False, name=None):
    if axis is None or axis == [] or axis == ():
        dims, reduce_all = [0], True
    else:
        dims = [int(a) for a in (axis if isinstance(axis, (list, tuple)) else [axis])]
        reduce_all = len(dims) == len(x.shape)
    return _append("reduce_sum", {"X": [x]}, x, {"dim": dims, "keep_dim": bool(keepdim), "reduce_all": reduce_all},
                   name)


LEGACY = {"matmul": _matmul, "bmm": _bmm, "sum": _reduce_sum, "multiply": _elementwise("elementwise_mul"),
          "maximum": _elementwise("elementwise_max"), "minimum": _elementwise("elementwise_min"),
          **{op: _unary(op) for op in UNARY_OPS}}
NN_LEGACY = {"gelu": _gelu, "sigmoid": _unary("sigmoid"), "tanh": _unary("tanh")}


def _dispatch(fast, slow):
    def f(*args, **kwargs):
        return slow(*args, **kwargs) if legacy_static() else fast(*args, **kwargs)
    f.__name__ = getattr(fast, "__name__", "f")
    return f


def _wrappers() -> dict:
    """id(original C-op function) -> (name, original, dispatching wrapper)."""
    wrappers = {}
    for name, fast in _generated.funcs_map:
        if name in LEGACY:
            wrappers[id(fast)] = (name, fast, _dispatch(fast, LEGACY[name]))
    for name, fast in _generated.nn_funcs_map:
        if name in NN_LEGACY:
            wrappers[id(fast)] = ("F." + name, fast, _dispatch(fast, NN_LEGACY[name]))
    for name in list(LEGACY) + list(NN_LEGACY):   # the raw C ops too (``from paddle._C_ops import matmul``)
        raw = getattr(_C_ops, name, None)
        if raw is not None and id(raw) not in wrappers:
            wrappers[id(raw)] = (name, raw, _dispatch(raw, LEGACY.get(name) or NN_LEGACY.get(name)))
    return wrappers


def install() -> list[str]:
    """Replace every reference to those C-op functions in the loaded paddle modules (``paddle.matmul``,
    ``paddle.tensor.matmul``, ``from paddle import matmul`` copies, ``F.gelu``) and on the legacy
    ``Variable`` class. Returns the names patched."""
    wrappers = _wrappers()
    patched = set()
    for modname, mod in list(sys.modules.items()):
        if (mod is None or mod is _generated or not (modname == "paddle" or modname.startswith("paddle."))
                or modname.startswith(("paddle._C_ops", "paddle.base.core"))):
            continue
        d = getattr(mod, "__dict__", None)
        if not isinstance(d, dict):
            continue
        for attr, val in list(d.items()):
            w = wrappers.get(id(val))
            if w is not None and val is w[1]:
                setattr(mod, attr, w[2])
                patched.add(w[0])
    for name, fast, wrapper in wrappers.values():
        if "." not in name and getattr(framework.Variable, name, None) is fast:
            setattr(framework.Variable, name, wrapper)
    return sorted(patched)


__all__ = ["install", "legacy_static"]
