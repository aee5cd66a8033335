"""Surgery: physically removing blocks from a model.

A removed block is replaced by :class:`Removed` (an ``nn.Identity`` that also takes, and ignores, any
extra arguments the block was called with: ``blk(x, H, W)`` returns ``x``) in its parent's sublayers,
which is where ``Sequential``, ``LayerList`` and attribute access (``self.block``) all find it, and in
every plain list, tuple or dict of the model that holds the same layer (:func:`compress.common.layers.replace_layer`): its
parameters leave the model and the state dict, its ops leave the exported graph, and the
remaining blocks keep their names and indices, so forward code that indexes its blocks
keeps working and weights map 1:1 onto the parent's.

:func:`replaced_by_identity` does the same for the length of a ``with`` block and puts
the original layers back: block discovery uses it to check that removing its blocks
really takes them out of the forward pass.

:func:`check_removal` is surgery checking itself: the pruned model must compute what the
unpruned one computes with the same blocks switched off *through DropPath* (:func:`switched_off`:
a block's own DropPath layers output zeros; a block without one has its output replaced by its
input, as ``StochasticDepth`` does with a zero mask). The body still runs in that reference, so a
body whose output also feeds something outside the block (a side head, an attribute a later layer
reads) makes the two differ, and the prune fails naming the block.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import paddle
import paddle.nn as nn

from ..common.errors import EXIT_PARITY, CompressError
from ..common.layers import get_sublayer, probe_forward, replace_layer, resolve_path, restore_layers, set_sublayer

SELF_CHECK_ATOL = 1e-5     # max abs difference allowed between the pruned model and its switched-off reference
SELF_CHECK_IMAGES = 32     # images in the check's batch


class Removed(nn.Identity):
    """A removed block: returns its first input; extra arguments (``blk(x, H, W)``, ``blk(x, mask=m)``) are
    accepted and ignored, as the block's skip path ignores them."""

    def forward(self, x, *args, **kwargs):
        return x


def _check_path(model, path: str) -> None:
    """Refuses a path that is not a sublayer (paths are resolved by registered names: dots allowed)."""
    if not isinstance(path, str) or not path or resolve_path(model, path) is None:
        raise CompressError(f"block {path!r} does not exist in this architecture")


def remove_blocks(model, paths: list[str]) -> None:
    """Replace the sublayer at each ``path`` with :class:`Removed`, in place (also where a plain list holds it)."""
    for path in paths:
        _check_path(model, path)
        replace_layer(model, path, Removed())


# --------------------------------------------------------------------------- branches
class ZeroBranch(nn.Layer):
    """A removed branch's compute: zeros of the compute's output shape (``shape``; the batch dimension added)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = [int(v) for v in shape]

    def forward(self, x, *args, **kwargs):
        return paddle.zeros([x.shape[0], *self.shape], dtype=x.dtype)


def remove_branch(model, record: dict) -> None:
    """Take a branch's body out of its block, in place: the compute (the body's last child) becomes
    :class:`ZeroBranch`, the pre-layers (a pre-norm) ``nn.Identity``. ``record``: the block's path, the
    body's child names and the compute's output shape (``compress.graph.branches.Branch.removal``)."""
    try:
        block = get_sublayer(model, str(record["block"]))
        body = [str(c) for c in record["body"]]
        if not body or not all(isinstance(block._sub_layers.get(c), nn.Layer) for c in body):
            raise KeyError(record["body"])
        shape = [int(v) for v in record["shape"]]
    except (AttributeError, IndexError, KeyError, ValueError, TypeError):
        raise CompressError(f"branch {record.get('kind')!r} of block {record.get('block')!r} does not exist in this "
                            "architecture") from None
    for c in body[:-1]:
        replace_layer(block, c, nn.Identity())
    replace_layer(block, body[-1], ZeroBranch(shape))


def remove_branches(model, records: list[dict]) -> None:
    for r in records:
        remove_branch(model, r)


@contextlib.contextmanager
def replaced_by_identity(model, paths: list[str]):
    """Within the ``with`` block, the sublayers at ``paths`` are :class:`Removed` (wherever the model holds
    them); then they are put back.

    Yields {path: original layer}.
    """
    undo, old = [], {}
    try:
        for path in paths:
            _check_path(model, path)
            old[path] = get_sublayer(model, path)
            undo.extend(replace_layer(model, path, Removed()))
        yield old
    finally:
        restore_layers(undo)


# --------------------------------------------------------------------------- the self-check
@dataclass(frozen=True)
class RemovedUnit:
    """One removable unit as plans, surgery, lineage and tests see it: a whole block, or one branch of a block.

    ``path``: a block's path, a branch's unit name (``blocks.3:attn``); ``own_droppath``: the DropPath layers
    surgery's self-check switches off (a branch: all its block's, of which it zeroes only call ``call``).
    A branch also has its block (``block_path``, ``depth``: the block's index), its ``kind`` (attn, mlp),
    ``label`` (``attn at depth 3``) and ``record``: the removal record :func:`remove_branch` takes.
    JSON (:meth:`to_json`, a plan's ``removed`` entries) keeps the keys plans always had, and
    :meth:`from_json` reads records written before ``granularity`` was one of them.
    """

    granularity: str = "block"
    path: str = ""
    index: int | None = None      # in the model's unit list at planning
    own_droppath: tuple[str, ...] = ()
    params: int = 0
    flops: int = 0
    block_path: str | None = None
    depth: int | None = None
    call: int | None = None
    kind: str | None = None
    label: str = ""
    record: dict | None = None

    def __post_init__(self):
        if self.granularity not in ("block", "branch"):
            raise ValueError(f"a removed unit is a block or a branch, not {self.granularity!r}")
        if self.granularity == "branch" and (self.block_path is None or self.call is None or self.record is None):
            raise ValueError(f"branch {self.path!r} needs its block_path, call and removal record")
        object.__setattr__(self, "own_droppath", tuple(self.own_droppath))

    @classmethod
    def of_block(cls, path: str, own_droppath=(), index: int | None = None, params: int = 0,
                 flops: int = 0) -> "RemovedUnit":
        return cls("block", path, index, tuple(own_droppath), params, flops)

    @property
    def is_branch(self) -> bool:
        return self.granularity == "branch"

    @property
    def layer_path(self) -> str:
        """The sublayer surgery works on: the block itself, or a branch's block."""
        return self.block_path if self.is_branch else self.path

    @property
    def name(self) -> str:
        """How a reader names it: ``attn at depth 3``, ``block 5``."""
        return self.label or f"block {self.index}"

    @property
    def described(self) -> str:
        """How an error message names it: with its path (and a branch's DropPath call)."""
        if self.is_branch:
            return f"{self.label or f'branch {self.call}'} ({self.block_path}, DropPath call {self.call})"
        return self.path if self.index is None else f"block {self.index} ({self.path})"

    def remove_from(self, model) -> None:
        """Surgery for this unit alone."""
        if self.is_branch:
            remove_branch(model, self.record)
        else:
            remove_blocks(model, [self.path])

    def to_json(self) -> dict:
        out = {"index": self.index, "path": self.path, "params": self.params, "flops": self.flops,
               "own_droppath": list(self.own_droppath)}
        if self.is_branch:
            out.update(block_path=self.block_path, depth=self.depth, call=self.call, kind=self.kind,
                       label=self.label, record=dict(self.record))
        return out

    @classmethod
    def from_json(cls, r: dict) -> "RemovedUnit":
        """A plan's ``removed`` entry (a branch's has its ``call``)."""
        if "call" in r:
            return cls("branch", r["path"], r.get("index"), tuple(r.get("own_droppath") or ()), r.get("params", 0),
                       r.get("flops", 0), r["block_path"], r.get("depth"), r["call"], r.get("kind"),
                       r.get("label") or "", dict(r["record"]))
        return cls.of_block(r["path"], r.get("own_droppath") or (), r.get("index"), r.get("params", 0),
                            r.get("flops", 0))


@dataclass
class RemovalCheck:
    """The self-check's figure: max abs difference of the outputs over ``images`` images (eval mode)."""

    max_abs_diff: float
    images: int
    tolerance: float = SELF_CHECK_ATOL

    def to_json(self) -> dict:
        return asdict(self)


class _Zero(nn.Layer):
    """A DropPath whose mask is all zeros."""

    def forward(self, x):
        return x * 0.0


class _CallSwitch(nn.Layer):
    """One of a block's DropPath layers, zeroing the calls numbered in ``off`` (the block's calls counted in
    ``counter``, reset when the block starts): one branch of a layer called twice switched off alone."""

    def __init__(self, original, counter: list, off: set):
        super().__init__()
        self.original, self.counter, self.off = original, counter, off

    def forward(self, x):
        k = self.counter[0]
        self.counter[0] += 1
        return x * 0.0 if k in self.off else self.original(x)


def _switch_calls(layer, names, calls: set, swapped: list, handles: list) -> None:
    counter = [0]
    handles.append(layer.register_forward_pre_hook(lambda _l, _i: counter.__setitem__(0, 0)))
    for name in names:
        original = get_sublayer(layer, name)
        swapped.append((layer, name, original))
        set_sublayer(layer, name, _CallSwitch(original, counter, calls))


@contextlib.contextmanager
def switched_off(model, units: Sequence[RemovedUnit]):
    """Within the ``with`` block, ``units`` of ``model`` are dropped as DropPath drops them (the body still runs);
    a branch unit zeroes only its own DropPath call."""
    handles, swapped = [], []
    calls: dict[str, tuple] = {}
    try:
        for u in units:
            layer = get_sublayer(model, u.layer_path)
            if u.is_branch:
                calls.setdefault(u.layer_path, (layer, u.own_droppath, set()))[2].add(u.call)
                continue
            for name in u.own_droppath:
                swapped.append((layer, name, get_sublayer(layer, name)))
                set_sublayer(layer, name, _Zero())
            if not u.own_droppath:
                handles.append(layer.register_forward_post_hook(lambda _l, inputs, _out: inputs[0]))
        for layer, names, off in calls.values():
            _switch_calls(layer, names, off, swapped, handles)
        yield model
    finally:
        for h in handles:
            h.remove()
        for layer, name, original in reversed(swapped):
            set_sublayer(layer, name, original)


def _outputs(model, x) -> list[np.ndarray]:
    out = probe_forward(model, x)
    return [t.numpy() for t in (out if isinstance(out, (list, tuple)) else [out])]


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    if len(a) != len(b) or any(u.shape != v.shape for u, v in zip(a, b)):
        return math.inf
    d = max((float(np.max(np.abs(u.astype(np.float64) - v))) if u.size else 0.0 for u, v in zip(a, b)), default=0.0)
    return math.inf if math.isnan(d) else d


def removal_diff(reference, pruned, units: Sequence[RemovedUnit], x) -> float:
    """Max abs difference between ``pruned`` and ``reference`` with ``units`` switched off, on batch ``x``
    (infinite when the pruned model's forward fails: a removed body's output was read elsewhere)."""
    with switched_off(reference, units):
        want = _outputs(reference, x)
    try:
        got = _outputs(pruned, x)
    except Exception:  # noqa: BLE001 - the user's forward code can raise anything on a removed body
        return math.inf
    return _max_diff(got, want)


def check_removal(reference, pruned, units: Sequence[RemovedUnit], x, rebuild: Callable[[], nn.Layer] | None = None,
                  tolerance: float = SELF_CHECK_ATOL) -> RemovalCheck:
    """Surgery checks itself: ``pruned`` (``reference`` with ``units`` removed) must give, on batch ``x``,
    ``reference``'s output with those units switched off, to ``tolerance``. Otherwise a CompressError
    (exit code 3) names the units at fault: each is tried alone on a fresh copy from ``rebuild``
    (none is to blame alone: all are named)."""
    diff = removal_diff(reference, pruned, units, x)
    if diff <= tolerance:
        return RemovalCheck(diff, int(x.shape[0]), tolerance)
    guilty = list(units)
    if rebuild is not None and len(units) > 1:
        alone = []
        for u in units:
            single = rebuild()
            u.remove_from(single)
            alone.append(removal_diff(reference, single, [u], x) > tolerance)
        guilty = [u for u, bad in zip(units, alone) if bad] or guilty
    raise CompressError(f"surgery self-check failed: removing {', '.join(u.described for u in guilty)} changes the "
                        f"output by {diff:.3g} (max abs, {int(x.shape[0])} images; allowed {tolerance:g}) against "
                        "the unpruned model with the same blocks switched off: a body's output is used outside its "
                        "block; nothing written", EXIT_PARITY)
