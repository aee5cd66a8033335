"""Residual layers, read off a traced probe forward pass (:mod:`compress.graph.tracing`).

A sublayer ``B`` is **residual** (a removable block) when, in the probe:

1. it is called exactly once, with a tensor ``x`` as its first positional argument, and returns a
   single tensor ``y`` of the same shape. Further positional arguments are allowed (Swin's
   ``blk(x, input_dimensions)``, PVT's ``blk(x, H, W)``, a mask) unless one is another tensor of
   ``x``'s shape (a second stream the output may be built from); they pass by a removed block;
2. ``y`` is reached from ``x`` along an *identity path*: the shortest chain of traced ops
   from ``y`` back to ``x`` (additions, multiplications, elementwise activations, and shape-only
   operations: reshape, flatten, transpose, permute, squeeze; anything else is opaque, part of a
   residual branch);
3. at each addition on the path the operand continuing the chain is kept; another operand
   that is a function of ``x`` and scalars alone (``x`` itself, ``2*x``) is kept too (it is
   part of the skip); every other operand is a *residual summand*. At least one summand
   must be computed: adding only parameters or buffers (a positional embedding) is no
   residual branch;
4. the path is not multiplied or divided by a tensor (``x * g + f(x)``, squeeze-excitation
   gating, an arithmetic LayerNorm): removing the layer would not give ``x`` once ``g`` is
   trained, even if ``g`` is 1 at initialisation;
5. *replay*: re-evaluating the path with every residual summand set to zero gives back ``x``,
   numerically, on the probe's actual input of the layer. That value is what the layer
   computes when DropPath drops all its branches, and what the network sees after the layer
   is replaced by ``nn.Identity``. The replay rejects ``2*x + f(x)``, ``x + x + f(x)`` and
   ``f(x) - x``, and it decides trailing activations: ``relu(x + f(x))`` (paddle.vision's
   BasicBlock/BottleneckBlock: ``out += identity; out = self.relu(out)``) is accepted when
   ``relu(x) == x`` on the block's input, which holds in a post-activation ResNet, where ``x``
   is itself a ReLU output, and is rejected when ``x`` has negative values. (Evidence from
   one probe, not a proof: such activations are listed in ``tail``.)

Nesting: residual layers compose. A residual layer whose every addition on its identity path
happens inside residual descendants (a ResNet stage ``Sequential(block, block)``, a wrapper
around one block) is a *composition* and is not a block: its parts are. Among the others the
*outermost* is the block, and residual layers inside it are rejected as nested: a residual
unit inside a block's branch (ConvNeXt-V2's GRN, ``gamma*(x*N(x)) + beta + x``) must not hide
the block it belongs to.

Finally a *replacement check* (:func:`check_replacement`): all blocks replaced by ``nn.Identity`` at
once, the model must run, give the same output shape and never call an old block again (a
block also held in a plain Python list would be); failing blocks are pinpointed one by one
and rejected.

Limits: skips written through untraced ops (``paddle.concat``/``split``, indexing,
``paddle.where``, an activation imported by name before the probe) are not seen; post-LN
transformers (``norm(x + f(x))``) are not residual by this rule; models whose input is not one
float image tensor cannot be probed. ``blocks_from`` in :mod:`compress.graph.blocks` is the escape hatch.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

import numpy as np
import paddle

from ..common.layers import count_params
from .surgery import replaced_by_identity
from .tracing import Call, Node, ProbeTrace, probe_input

INF = float("inf")


@dataclass
class Rejection:
    """A sublayer that is not a block, and why. ``kind`` groups reasons (see :data:`REJECTION_KINDS`)."""

    path: str
    reason: str
    kind: str
    leaf: bool = False          # a layer without sublayers (conv, norm, activation): never a block
    inside: str | None = None   # the block it belongs to, if any
    residual: bool = False      # its first input does reach its output through a skip: a candidate a reader weighs

    def to_json(self) -> dict:
        return {"path": self.path, "reason": self.reason, "kind": self.kind, "leaf": self.leaf,
                "inside": self.inside, "residual": self.residual}


# kind -> how a group of rejections is titled (in this order)
REJECTION_KINDS = {
    "shape": "changes the shape (stem, downsampling, head)",
    "projection": "output is a sum, but the skip goes through a projection (downsampling block)",
    "no-skip": "no skip connection: the input does not reach the output through additions",
    "gated": "the skip is gated, scaled by a tensor or normalised",
    "skip-altered": "with the branches removed the output is not the input",
    "params-only": "adds only parameters (bias, embedding)",
    "composition": "composition of residual blocks (its parts are the blocks)",
    "nested": "residual, but inside a block",
    "identity": "returns its input unchanged (Identity, Dropout/DropPath at eval)",
    "shared": "called more than once per forward (shared)",
    "signature": "not one tensor in, one tensor out",
    "not-called": "not called in the forward pass (a LayerList, or unused)",
    "surgery": "replacing it by Identity does not take it out of the forward pass",
    "pattern": "not selected by the pattern",
}


@dataclass
class PathInfo:
    """The identity path of one residual layer (``ok``), or why there is none."""

    ok: bool
    reason: str = ""
    kind: str = ""
    add_nodes: set = field(default_factory=set)      # additions on the path
    branch_adds: set = field(default_factory=set)    # those that add a computed residual summand
    summands: list = field(default_factory=list)     # the computed residual summands (nodes)
    ops: list = field(default_factory=list)          # op labels on the path, output side first
    tail: list = field(default_factory=list)         # elementwise ops on the path, output side first
    branches: int = 0                                 # computed residual summands

    @classmethod
    def no(cls, kind: str, reason: str) -> "PathInfo":
        return cls(False, reason, kind)


def _allclose(a, b) -> bool:
    a, b = a.numpy(), b.numpy()
    if a.shape != b.shape:
        return False
    scale = float(np.abs(b).max()) if b.size else 0.0
    return bool(np.allclose(a, b, rtol=1e-5, atol=1e-6 + 1e-5 * scale))


def _outer_producer(node, inside: str):
    cands = [p for p in node.producers if p.startswith(inside + ".")]
    return cands[-1] if cands else None


class _PathWalk:
    """Follows the identity path of one call from its output back to its input, and replays it with
    every residual summand set to zero (see the module docstring, rules 2-5)."""

    def __init__(self, c: Call):
        self.c, self.x = c, c.x
        self.xval = c.x.val()
        self._dist: dict[int, float] = {}
        self._pure: dict[int, bool] = {}
        self.info = PathInfo(True)
        self.flags: list[str] = []
        self.gates: list[str] = []

    def dist(self, n) -> float:
        """Length of the shortest chain of traced ops from ``n`` back to the input (INF: none)."""
        if not isinstance(n, Node):
            return INF
        if n is self.x:
            return 0
        if n.idx < self.x.idx or n.kind == "leaf":
            return INF
        d = self._dist.get(n.idx)
        if d is None:
            self._dist[n.idx] = INF
            d = 1 + min((self.dist(p) for p in n.parents()), default=INF)
            self._dist[n.idx] = d
        return d

    def pure(self, op) -> bool:
        """A function of the input and scalars only, through traced ops."""
        if not isinstance(op, Node) or op is self.x:
            return True
        if op.kind == "leaf" or op.idx < self.x.idx:
            return False
        r = self._pure.get(op.idx)
        if r is None:
            self._pure[op.idx] = False
            r = all(self.pure(t) for t, _ in op.terms)
            self._pure[op.idx] = r
        return r

    def evp(self, n):
        """Full evaluation of a pure subexpression from the input."""
        if not isinstance(n, Node):
            return n
        if n is self.x:
            return self.xval
        if n.kind == "add":
            acc = 0
            for op, coef in n.terms:
                acc = acc + (self.evp(op) if coef == 1 else self.evp(op) * coef)
            return acc
        (a, _), *rest = n.terms
        if n.kind == "mul":
            return self.evp(a) * self.evp(rest[0][0])
        if n.kind == "div":
            return self.evp(a) / self.evp(rest[0][0])
        return n.fn(self.evp(a))

    def ev(self, n):
        """Replay the path from ``n`` with the residual summands zeroed."""
        if n is self.x:
            return self.xval
        self.info.ops.append(n.label)
        chosen = min((op for op, _ in n.terms if isinstance(op, Node)), key=self.dist)
        if n.kind == "add":
            return self._ev_add(n, chosen)
        if n.kind in ("mul", "div"):
            return self._ev_mul(n, chosen)
        if n.kind != "view":                # a shape-only op is no activation on the skip
            self.info.tail.append(n.label)
        return n.fn(self.ev(chosen))

    def _ev_add(self, n, chosen):
        self.info.add_nodes.add(n.idx)
        acc = None
        for op, coef in n.terms:
            if op is chosen:
                v = self.ev(op)
            elif self.pure(op):
                v = self.evp(op)
                if isinstance(op, Node):
                    self.flags.append("the input is added more than once")
            elif getattr(op.tensor, "persistable", False):
                continue                    # a parameter/buffer summand: dropped, not a branch
            else:
                self.info.branches += 1     # a residual summand: dropped
                self.info.branch_adds.add(n.idx)
                self.info.summands.append(op)
                continue
            v = v if coef == 1 else v * coef
            acc = v if acc is None else acc + v
        return acc

    def _ev_mul(self, n, chosen):
        (a, _), (b, _) = n.terms
        other = b if chosen is a else a
        if isinstance(other, Node) and self.pure(other):
            self.flags.append(f"the input is multiplied by a function of itself ({n.label})")
        elif isinstance(other, Node) and int(np.prod(other.tensor.shape)) > 1:
            who = _outer_producer(other, self.c.path) or ("a parameter" if getattr(other.tensor, "persistable", False)
                                                          else "a tensor")
            self.gates.append(f"{who} ({n.label})")
        va = self.ev(a) if a is chosen else (a.val() if isinstance(a, Node) else a)
        vb = self.ev(b) if b is chosen else (b.val() if isinstance(b, Node) else b)
        return va * vb if n.kind == "mul" else va / vb


def _no_path_reason(c: Call) -> PathInfo:
    """Why the output does not reach back to the input: a sum without an identity summand, or no sum."""
    n = c.y
    while n.kind in ("unary", "view") and n.parents():
        n = n.parents()[0]
    if n.kind != "add":
        return PathInfo.no("no-skip", "output does not contain the input through additions")
    terms = [(_outer_producer(op, c.path) or op.label or "a tensor") if isinstance(op, Node) else repr(op)
             for op, _ in n.terms]
    proj = [t for t in terms if re.search(r"down|short|proj|skip", t)]
    if proj:
        return PathInfo.no("projection", f"projection on the skip path ({', '.join(proj)}): output = "
                                         + " + ".join(terms))
    return PathInfo.no("no-skip", "output is a sum (" + " + ".join(terms) + ") but no summand carries the input "
                                  "unchanged")


def _replay_mismatch(walk: _PathWalk, yr) -> PathInfo:
    """Why the replayed path is not the input: scaled, an activation that is not the identity here, or else."""
    if isinstance(yr, paddle.Tensor):
        xs, ys = walk.xval.numpy().ravel(), yr.numpy().ravel()
        if xs.shape == ys.shape and float(xs @ xs) > 0:
            k = float(xs @ ys) / float(xs @ xs)
            if abs(k - 1) > 1e-3 and np.allclose(ys, k * xs, rtol=1e-4, atol=1e-5 * float(np.abs(xs).max())):
                return PathInfo.no("skip-altered", f"output contains the input scaled by {k:.3g} "
                                                   f"({k:.3g}*x + ...), not x + ...")
        if walk.info.tail and xs.shape == ys.shape:
            neg = float((xs < 0).mean()) if xs.size else 0.0
            dev = float(np.abs(ys - xs).max()) if xs.size else 0.0
            return PathInfo.no("skip-altered", f"the skip path passes through {', '.join(dict.fromkeys(walk.info.tail))}, "
                                               f"which is not the identity on this layer's input (max |act(x) - x| = "
                                               f"{dev:.3g}; {neg:.0%} of the input values are negative)")
    return PathInfo.no("skip-altered", "with the residual branches removed the output is not the input"
                       + (f" ({walk.flags[0]})" if walk.flags else ""))


def analyse(c: Call) -> PathInfo:
    """The identity path of one call (rules 2-5 of the module docstring)."""
    if c.y is c.x:
        return PathInfo.no("identity", "returns its input unchanged (identity at eval: Identity/Dropout/DropPath)")
    walk = _PathWalk(c)
    if walk.dist(c.y) == INF:
        return _no_path_reason(c)
    with paddle.no_grad():
        yr = walk.ev(c.y)
    info = walk.info
    if not info.add_nodes:
        if walk.gates:
            return PathInfo.no("gated", f"the input reaches the output only through a multiplication by "
                                        f"{walk.gates[0]} (x * g: gating such as squeeze-excitation), not an addition")
        return PathInfo.no("no-skip", "no addition on the input's path (only elementwise ops: "
                           + ", ".join(dict.fromkeys(info.ops)) + ")")
    if walk.gates:
        return PathInfo.no("gated", f"the skip path is multiplied or divided by {walk.gates[0]} (x * g + ...: gating, "
                                    "a learnable skip scale, or normalisation): removing the layer would not give x")
    if not isinstance(yr, paddle.Tensor) or not _allclose(yr, walk.xval):
        return _replay_mismatch(walk, yr)
    if info.branches == 0:
        return PathInfo.no("params-only", "adds only parameters/constants to the input (bias or embedding), "
                                          "no residual branch")
    return info


def call_problem(c: Call) -> tuple[str, str] | None:
    """(kind, reason) if the layer cannot be a block whatever it computes: not called once, not
    one tensor in and out, or a shape change."""
    if c.calls == 0:
        return "not-called", "not called in the forward pass (a container such as LayerList, or unused)"
    if c.calls > 1:
        return "shared", f"called {c.calls} times per forward (a shared layer)"
    if c.input_issue or c.output_issue:
        return "signature", c.input_issue or c.output_issue
    if c.in_shape != c.out_shape:
        return "shape", f"shape changes {c.in_shape} -> {c.out_shape}"
    return None


def _looks_residual(c: Call) -> bool:
    """A call rejected for how it is called whose first input still reaches its output through a skip."""
    if c.x is None or c.y is None or c.in_shape != c.out_shape:
        return False
    try:
        return analyse(c).ok
    except Exception:  # noqa: BLE001 - only for the message; the layer is rejected anyway
        return False


def _residual_layers(trace: ProbeTrace) -> tuple[dict[str, PathInfo], list[Rejection]]:
    """Every residual layer with its path; every other sublayer as a rejection."""
    residual, rejected = {}, []
    for path, c in sorted(trace.calls.items(), key=lambda kv: (kv[1].order < 0, kv[1].order)):
        problem = call_problem(c)
        if problem is not None and problem[0] != "shape":
            looks = problem[0] != "not-called" and not c.leaf and _looks_residual(c)
            rejected.append(Rejection(path, problem[1], problem[0], c.leaf, residual=looks))
            continue
        info = analyse(c)
        if problem is not None:   # a shape change: say what the output was, if it was a sum
            proj = info.kind == "projection"
            rejected.append(Rejection(path, problem[1] + (f"; {info.reason}" if proj else ""),
                                      "projection" if proj else "shape", c.leaf))
        elif not info.ok:
            rejected.append(Rejection(path, info.reason, info.kind, c.leaf))
        else:
            residual[path] = info
    return residual, rejected


def _compositions(residual: dict[str, PathInfo]) -> dict[str, list[str]]:
    """Residual layers whose every addition of a residual branch on the identity path happens inside residual
    descendants (an addition of parameters alone, a positional embedding, is no branch of the layer's own)."""
    out = {}
    for p, info in residual.items():
        ds = [q for q in residual if q.startswith(p + ".")]
        covered = set().union(*(residual[d].add_nodes for d in ds)) if ds else set()
        if ds and info.branch_adds <= covered and info.add_nodes & covered:
            out[p] = [d for d in ds if residual[d].add_nodes & info.add_nodes]
    return out


def outermost_blocks(trace: ProbeTrace) -> tuple[list[str], dict[str, PathInfo], list[Rejection]]:
    """(block paths in forward order, their paths' info, rejections): compositions are split into their
    parts; of nested residual layers the outermost is the block."""
    residual, rejected = _residual_layers(trace)
    composition = _compositions(residual)
    kept = [p for p in residual if p not in composition]
    blocks = []
    for p in kept:
        outer = [q for q in kept if p.startswith(q + ".")]
        if outer:
            rejected.append(Rejection(p, f"residual, but nested inside block {outer[0]} (the outermost residual "
                                         "layer is the block)", "nested", trace.calls[p].leaf, residual=True))
        else:
            blocks.append(p)
    for p, parts in composition.items():
        shown = ", ".join(parts[:4]) + (", ..." if len(parts) > 4 else "")
        rejected.append(Rejection(p, f"composition of {len(parts)} residual blocks ({shown}): its identity path "
                                     "runs through them only; the finer blocks are the blocks", "composition",
                                  trace.calls[p].leaf))
    order = {p: c.order if c.order >= 0 else 10 ** 9 for p, c in trace.calls.items()}
    blocks.sort(key=lambda q: order[q])
    rejected.sort(key=lambda r: (order.get(r.path, 10 ** 9), r.path))
    return blocks, {p: residual[p] for p in blocks}, rejected


def follow_paths(fn, *args):
    """Run ``fn`` with a recursion limit deep enough for the identity paths of deep containers."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))
    try:
        return fn(*args)
    finally:
        sys.setrecursionlimit(limit)


# ----------------------------------------------------------------------------- replacement check
@dataclass
class ReplacementCheck:
    """What running the model with some layers replaced by ``nn.Identity`` gave."""

    ok: bool
    error: str = ""
    out_shape: list | None = None
    still_called: list = field(default_factory=list)


def check_replacement(model, input_shape, paths, reference_shape=None) -> ReplacementCheck:
    """Replace every layer in ``paths`` by ``nn.Identity``, run the model once, restore it."""
    still: list[str] = []
    handles = []
    was_training = model.training
    x = probe_input(input_shape, seed=1)
    try:
        model.eval()
        with paddle.no_grad():
            if reference_shape is None:
                reference_shape = list(model(x).shape)
            with replaced_by_identity(model, list(paths)) as old:
                handles = [layer.register_forward_pre_hook(lambda lay, i, p=p: still.append(p))
                           for p, layer in old.items()]
                out = model(x)
    except Exception as e:  # noqa: BLE001 - reported to the caller
        return ReplacementCheck(False, f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
    finally:
        for h in handles:
            h.remove()
        if was_training:
            model.train()
    shape = list(out.shape) if isinstance(out, paddle.Tensor) else None
    if shape != list(reference_shape):
        return ReplacementCheck(False, f"output shape {shape} != {list(reference_shape)}", shape)
    if still:
        called = sorted(set(still))
        return ReplacementCheck(False, "still called after replacement (held where compress cannot replace it: a closure, a bound method, a global): "
                            + ", ".join(called), shape, called)
    return ReplacementCheck(True, out_shape=shape)


def surgery_check(model, input_shape, paths: list[str], reference_shape) -> tuple[list[str], list[Rejection]]:
    """(paths that can be removed, rejections for the others): all at once, else one by one."""
    if not paths or check_replacement(model, input_shape, paths, reference_shape).ok:
        return list(paths), []
    good, bad = [], []
    for p in paths:
        r = check_replacement(model, input_shape, [p], reference_shape)
        if r.ok:
            good.append(p)
        else:
            bad.append(Rejection(p, f"surgery check failed: {r.error}", "surgery", residual=True))
    return good, bad


def n_params(trace: ProbeTrace, path: str) -> int:
    return count_params(trace.sublayers[path])
