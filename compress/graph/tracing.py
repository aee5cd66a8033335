"""Tracing one probe forward pass: every sublayer call and the tensor arithmetic around it.

:func:`probe_trace` runs the model once (eval mode, ``no_grad``, batch 2, a seeded random
input) with a forward pre/post hook on every sublayer and with paddle's elementwise
arithmetic temporarily wrapped, and returns a small dataflow graph: which layer received
which tensor, which tensor it returned, and how tensors were added, subtracted,
multiplied, divided or passed through an activation in between. :mod:`compress.graph.residual`
reads skip connections off that graph.

What is traced (paddle 3.3.1; model code looks these up at call time, so it sees the
wrappers):

* ``paddle.Tensor`` arithmetic: ``__add__``/``__radd__``/``__sub__``/``__rsub__``/``__mul__``/
  ``__rmul__``/``__truediv__``/``__rtruediv__``/``__neg__`` and ``add``, ``add_``, ``subtract``,
  ``subtract_``, ``multiply``, ``divide``, ``scale``. paddle installs them on the class with
  ``setattr`` (``paddle/base/dygraph/math_op_patch.py``), so they can be swapped and the
  identical objects put back. ``Tensor`` has no ``__iadd__``: ``out += x`` is ``__add__``.
* ``paddle.add/subtract/multiply/divide/scale/add_n`` and the functional activations
  (``F.relu``, ``relu6``, ``gelu``, ``hardswish``, ``dropout``, ...), replaced wherever the
  identical function object is an attribute of ``paddle``, ``paddle.tensor``,
  ``paddle.tensor.math`` or ``paddle.nn.functional`` (and its ``activation``/``common``).
* A parameter-free leaf layer that returns a new tensor of its input's shape (``nn.ReLU``,
  ``nn.Dropout`` at eval) becomes an elementwise node, replayed by calling the layer again.

* Shape-only operations (``reshape``, ``flatten``, ``transpose``, ``permute``, ``squeeze``,
  ``unsqueeze``, ``view``, ``moveaxis``/``swapaxes``, as ``Tensor`` methods and ``paddle``
  functions) become *view* nodes, replayed by calling the op again: a skip that leaves the
  block's shape and comes back to it (``x.flatten(2).transpose([0, 2, 1])`` ... ``.reshape(x.shape)``)
  is followed like any other.

Anything else (conv, linear, norm layers, indexing, concat) is opaque: its output is a leaf.
A reentrancy counter keeps ops called *inside* a traced op (``paddle.add(..., alpha=)``
multiplies internally) out of the graph. Every node keeps a reference to its tensor for the
life of the graph, so a tensor's ``id`` cannot be reused while the graph is in use; an
in-place op gives the same object a new node after its old value was cloned. All patches
and hooks are removed, and the train/eval mode restored, also when the forward raises.
Not thread-safe while probing: the patches are process-global for that one forward pass.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import paddle
import paddle.nn.functional as F
import paddle.nn.functional.activation as _F_activation
import paddle.nn.functional.common as _F_common
import paddle.tensor as _pt
import paddle.tensor.manipulation as _ptmanip
import paddle.tensor.math as _ptm


# ----------------------------------------------------------------------------- graph
class Node:
    """One tensor value in the traced forward pass."""

    __slots__ = ("idx", "kind", "tensor", "value", "terms", "fn", "label", "producers")

    def __init__(self, idx, kind, tensor, label="", terms=(), fn=None):
        self.idx = idx
        self.kind = kind          # leaf | add | mul | div | unary | view
        self.tensor = tensor      # the tensor object (kept alive by the node)
        self.value = None         # clone of the value if the object was later modified in place
        self.terms = list(terms)  # add: [(operand, coef)], mul/div: [(a, 1), (b, 1)], unary/view: [(parent, 1)]
        self.fn = fn              # unary/view replay: fn(tensor) -> tensor
        self.label = label        # e.g. "Tensor.__add__", "paddle.add", "F.relu", "layer:layer1.0.relu(ReLU)"
        self.producers = []       # layer paths that returned this tensor, innermost first

    def val(self):
        return self.value if self.value is not None else self.tensor

    def parents(self):
        return [op for op, _ in self.terms if isinstance(op, Node)]

    def __repr__(self):
        return f"<{self.kind} #{self.idx} {self.label}>"


class Tracer:
    """Dataflow graph of the traced ops of one forward pass."""

    def __init__(self):
        self.nodes: list[Node] = []
        self.by_id: dict[int, Node] = {}
        self.active = False
        self.depth = 0            # >0 while inside a traced op: its internal ops are not traced

    def new(self, kind, tensor, label="", terms=(), fn=None) -> Node:
        n = Node(len(self.nodes), kind, tensor, label, terms, fn)
        self.nodes.append(n)
        if tensor is not None:
            self.by_id[id(tensor)] = n   # the node holds the reference: this id stays unique
        return n

    def node_of(self, t) -> Node:
        n = self.by_id.get(id(t))
        if n is None or n.tensor is not t:
            n = self.new("leaf", t)
        return n

    def operand(self, x):
        return self.node_of(x) if isinstance(x, paddle.Tensor) else x

    def snapshot(self, t):
        """Before an in-place op on ``t``: keep the value its current node stands for."""
        n = self.node_of(t)
        if n.value is None:
            n.value = t.clone()


# ----------------------------------------------------------------------------- op wrappers
_ADD_KW = {"input": "x", "other": "y"}


def _arg(args, kwargs, i, name, default=None):
    if len(args) > i:
        return args[i]
    for k, v in kwargs.items():
        if k == name or _ADD_KW.get(k) == name:
            return v
    return default


def _replay(orig, args, kwargs, inplace=False):
    """Unary replay: call ``orig`` again with the first argument replaced."""
    args, kwargs = tuple(args), dict(kwargs)

    def fn(v):
        if inplace:
            v = v.clone()
        if args:
            return orig(v, *args[1:], **kwargs)
        return orig(v, **{k: w for k, w in kwargs.items() if k not in ("x", "input")})
    return fn


@dataclass(frozen=True)
class _Op:
    """How one wrapped function is recorded: ``kind`` is add, sub, mul, div, add_n, scale, unary or view."""

    orig: Callable
    label: str
    kind: str
    inplace: bool = False
    reflected: bool = False   # __radd__(self, other) computes other + self


def _wrapper(tr: Tracer, op: _Op) -> Callable:
    """A traced version of ``op.orig``."""

    @functools.wraps(op.orig)
    def wrapper(*args, **kwargs):
        if not tr.active or tr.depth:
            return op.orig(*args, **kwargs)
        tr.depth += 1
        try:
            first = _arg(args, kwargs, 0, "x") if op.kind != "add_n" else None
            if op.inplace and isinstance(first, paddle.Tensor):
                tr.snapshot(first)
            out = op.orig(*args, **kwargs)
        finally:
            tr.depth -= 1
        try:
            _record(tr, op, args, kwargs, out)
        except Exception:  # noqa: BLE001 - tracing must never break the model's forward
            pass
        return out

    return wrapper


def _record(tr: Tracer, op: _Op, args, kwargs, out) -> None:
    if not isinstance(out, paddle.Tensor):
        return
    if op.kind == "add_n":
        inputs = _arg(args, kwargs, 0, "inputs")
        inputs = [inputs] if isinstance(inputs, paddle.Tensor) else inputs
        tr.new("add", out, op.label, [(tr.operand(t), 1.0) for t in inputs])
        return
    if op.kind in ("unary", "scale", "view"):
        x = _arg(args, kwargs, 0, "x")
        if isinstance(x, paddle.Tensor):
            tr.new("view" if op.kind == "view" else "unary", out, op.label, [(tr.operand(x), 1.0)],
                   _replay(op.orig, args, kwargs, op.inplace))
        return
    a, b = _arg(args, kwargs, 0, "x"), _arg(args, kwargs, 1, "y")
    if op.reflected:
        a, b = b, a
    if not isinstance(a, paddle.Tensor) and not isinstance(b, paddle.Tensor):
        return
    A, B = tr.operand(a), tr.operand(b)
    if op.kind in ("add", "sub"):
        alpha = kwargs.get("alpha", 1)
        coef = (-1.0 if op.kind == "sub" else 1.0) * (alpha if isinstance(alpha, (int, float)) else 1.0)
        tr.new("add", out, op.label, [(A, 1.0), (B, coef)])
    else:
        tr.new(op.kind, out, op.label, [(A, 1.0), (B, 1.0)])


# (attribute, kind, inplace, reflected)
_TENSOR_OPS = [
    ("__add__", "add", False, False), ("__radd__", "add", False, True),
    ("__sub__", "sub", False, False), ("__rsub__", "sub", False, True),
    ("__mul__", "mul", False, False), ("__rmul__", "mul", False, True),
    ("__truediv__", "div", False, False), ("__rtruediv__", "div", False, True),
    ("__neg__", "unary", False, False),
    ("add", "add", False, False), ("add_", "add", True, False),
    ("subtract", "sub", False, False), ("subtract_", "sub", True, False),
    ("multiply", "mul", False, False), ("divide", "div", False, False),
    ("scale", "scale", False, False),
] + [(name, "view", name.endswith("_"), False) for name in (
    "reshape", "reshape_", "flatten", "flatten_", "transpose", "transpose_", "squeeze", "squeeze_", "unsqueeze",
    "unsqueeze_", "permute", "view", "moveaxis", "swapaxes", "swapdims", "t")]
_VIEW_OPS = [name for name, kind, _, _ in _TENSOR_OPS if kind == "view"]
_FUNC_OPS = {"add": "add", "subtract": "sub", "multiply": "mul", "divide": "div", "scale": "scale", "add_n": "add_n",
             **{name: "view" for name in _VIEW_OPS}}
_ACTIVATIONS = ["relu", "relu6", "gelu", "hardswish", "silu", "swish", "leaky_relu", "elu", "hardtanh", "sigmoid",
                "tanh", "mish", "hardsigmoid", "dropout", "relu_", "leaky_relu_", "elu_", "hardtanh_", "tanh_"]
_FUNCTION_MODULES = (paddle, _pt, _ptm, _ptmanip, F, _F_activation, _F_common)


class Patches:
    """Installs the traced ops; :meth:`restore` puts every original object back."""

    def __init__(self, tr: Tracer):
        self.tr = tr
        self.saved: list[tuple[Any, str, Any]] = []

    def _set(self, owner, name, new):
        self.saved.append((owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)))
        setattr(owner, name, new)

    def _functions(self) -> dict[int, _Op]:
        """The functions to wrap, by identity (one function has several public names)."""
        ops: dict[int, _Op] = {}
        for name, kind in _FUNC_OPS.items():
            f = getattr(paddle, name, None)
            if f is not None:
                ops[id(f)] = _Op(f, f"paddle.{name}", kind, inplace=kind == "view" and name.endswith("_"))
        for name in _ACTIVATIONS:
            f = getattr(F, name, None)
            if f is not None:
                ops.setdefault(id(f), _Op(f, f"F.{name}", "unary", inplace=name.endswith("_")))
        return ops

    def install(self):
        tr, T = self.tr, paddle.Tensor
        try:
            for name, kind, inplace, refl in _TENSOR_OPS:
                if callable(T.__dict__.get(name)):
                    self._set(T, name, _wrapper(tr, _Op(T.__dict__[name], f"Tensor.{name}", kind, inplace, refl)))
            ops, wrappers = self._functions(), {}
            for mod in _FUNCTION_MODULES:
                for name, val in list(vars(mod).items()):
                    op = ops.get(id(val))
                    if op is None or op.orig is not val:
                        continue
                    if id(val) not in wrappers:
                        wrappers[id(val)] = _wrapper(tr, op)
                    self._set(mod, name, wrappers[id(val)])
        except BaseException:
            self.restore()
            raise

    def restore(self):
        while self.saved:
            owner, name, orig = self.saved.pop()
            setattr(owner, name, orig)


# ----------------------------------------------------------------------------- probe
@dataclass
class Call:
    """What one sublayer did in the probe (its first call)."""

    path: str
    layer: Any
    order: int = -1
    calls: int = 0
    x: Node | None = None           # node of the input at entry
    y: Node | None = None           # node of the output
    in_shape: list | None = None
    out_shape: list | None = None
    input_issue: str = ""
    output_issue: str = ""
    extra: list = field(default_factory=list)   # the call's other positional arguments, described (``int``, ``tuple``)

    @property
    def leaf(self) -> bool:
        return not list(self.layer.children())


def describe_argument(a) -> str:
    """A short description of a call's extra argument, for messages and the blocks listing."""
    if isinstance(a, paddle.Tensor):
        return f"tensor{list(a.shape)}"
    if isinstance(a, (list, tuple)):
        return f"{type(a).__name__}[{', '.join(describe_argument(v) for v in a[:4])}{', ...' if len(a) > 4 else ''}]"
    if a is None or isinstance(a, (bool, int, float, str)):
        return repr(a) if isinstance(a, bool) or a is None else type(a).__name__
    return type(a).__name__


def _second_stream(inputs) -> str:
    """Why extra positional arguments stop the call from being a block: another tensor of the first one's shape
    (a second stream the output may be built from: a projected shortcut, a child's features). Other extras
    (ints, shapes, masks, the first tensor itself again) pass by, as a removed block ignores them."""
    x = inputs[0]
    for k, a in enumerate(inputs[1:], start=2):
        if isinstance(a, paddle.Tensor) and a is not x and list(a.shape) == list(x.shape):
            return (f"takes {len(inputs)} positional inputs, and input {k} is a second tensor of the first's shape "
                    f"{list(x.shape)}")
    return ""


def _param_free_leaf(layer) -> bool:
    return not list(layer.children()) and not list(layer.parameters())


class _Hooks:
    """Forward pre/post hooks on every sublayer, filling in one :class:`Call` each."""

    def __init__(self, tr: Tracer, model):
        self.tr, self.counter = tr, 0
        self.calls = {path: Call(path, layer) for path, layer in model.named_sublayers()}  # a shared layer: first name

    def pre(self, c: Call):
        def hook(layer, inputs):
            c.calls += 1
            if c.calls > 1:
                return None
            c.order, self.counter = self.counter, self.counter + 1
            if inputs and isinstance(inputs[0], paddle.Tensor):
                c.x, c.in_shape = self.tr.node_of(inputs[0]), list(inputs[0].shape)
                c.extra = [describe_argument(a) for a in inputs[1:]]
                c.input_issue = _second_stream(inputs)
            else:
                c.input_issue = ("takes no positional input" if not inputs
                                 else f"first input is a {type(inputs[0]).__name__}, not a tensor")
            return None
        return hook

    def post(self, c: Call):
        def hook(layer, inputs, output):
            if c.calls > 1 or c.y is not None:   # a later call: only say who returned the tensor
                n = self.tr.by_id.get(id(output)) if isinstance(output, paddle.Tensor) else None
                if n is not None and n.tensor is output and c.path not in n.producers:
                    n.producers.append(c.path)
                return None
            if not isinstance(output, paddle.Tensor):
                c.output_issue = f"returns a {type(output).__name__}, not a single tensor"
                first = output[0] if isinstance(output, (list, tuple)) and output else None
                if not isinstance(first, paddle.Tensor):
                    return None
                output = first   # analysed all the same, to say why a residual-looking layer is no block
            c.out_shape = list(output.shape)
            n = self.tr.by_id.get(id(output))
            if n is None or n.tensor is not output:
                n = self._untraced(c, layer, output)
            n.producers.append(c.path)
            c.y = n
            return None
        return hook

    def _untraced(self, c: Call, layer, t) -> Node:
        """An output no traced op made: a parameter-free elementwise leaf layer (replayed by calling it
        again), or else an opaque leaf."""
        if c.x is not None and _param_free_leaf(layer) and c.x.tensor is not t and c.in_shape == c.out_shape:
            return self.tr.new("unary", t, f"layer:{c.path}({type(layer).__name__})", [(c.x, 1.0)],
                               fn=lambda v, layer=layer: layer(v))
        return self.tr.new("leaf", t)

    def register(self) -> list:
        handles = []
        for c in self.calls.values():
            handles.append(c.layer.register_forward_pre_hook(self.pre(c)))
            handles.append(c.layer.register_forward_post_hook(self.post(c)))
        return handles


@dataclass
class ProbeTrace:
    """The traced probe: the graph, one :class:`Call` per sublayer (``calls == 0``: not called)."""

    tracer: Tracer
    calls: dict
    output: Any
    seconds: float
    sublayers: dict = field(default_factory=dict)

    @property
    def output_shape(self) -> list | None:
        return list(self.output.shape) if isinstance(self.output, paddle.Tensor) else None


def probe_input(input_shape, seed: int = 0, batch: int = 2):
    """The probe's input: seeded standard-normal float32 of shape [batch, *input_shape]."""
    rng = np.random.default_rng(seed)
    return paddle.to_tensor(rng.standard_normal((batch, *input_shape)).astype("float32"))


def probe_trace(model, input_shape, seed: int = 0) -> ProbeTrace:
    """One traced forward pass (eval, no_grad, batch 2); see the module docstring."""
    tr = Tracer()
    hooks = _Hooks(tr, model)
    patches = Patches(tr)
    was_training = model.training
    handles = []
    t0 = time.perf_counter()
    try:
        handles = hooks.register()
        model.eval()
        x = probe_input(input_shape, seed)
        patches.install()
        tr.active = True
        with paddle.no_grad():
            out = model(x)
    finally:
        tr.active = False
        patches.restore()
        for h in handles:
            h.remove()
        if was_training:
            model.train()
    return ProbeTrace(tr, hooks.calls, out, time.perf_counter() - t0, dict(model.named_sublayers()))
