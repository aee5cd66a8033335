"""Finding the removable blocks of any Paddle model, by their skip connection.

A block is a sublayer whose input reaches its output through additions only
(``y = x + f(x)``, possibly ``x + f1(x) + f2(x)``, or ``relu(x + f(x))`` where ``relu(x) == x``):
a transformer block, a ResNet basic/bottleneck block without downsampling, a ConvNeXt block,
a stride-1 equal-channel inverted residual. It is found in one traced probe forward pass
(:mod:`compress.graph.tracing`, the rule in :mod:`compress.graph.residual`). Removing such a block is
stochastic depth made permanent: the data flows straight past it. A shape-preserving layer
with no skip around it (a depthwise conv inside an inverted residual, a VGG layer) is not a
block; stems, downsampling layers and heads change shape and are never removable.

Where a user knows better, ``pattern`` (``--blocks-from``) picks the blocks by path instead
(:func:`discover_blocks`): every sublayer whose dotted path matches and that is called once
with one tensor and keeps its shape. Whether it also has a skip connection is reported
(``Block.residual``) but not required.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..common.errors import CompressError
from .residual import (REJECTION_KINDS, PathInfo, Rejection, analyse, call_problem, follow_paths, n_params,
                       outermost_blocks, surgery_check)
from .surgery import RemovedUnit
from .tracing import ProbeTrace, probe_trace


def find_own_droppath(block) -> list[str]:
    """Names of the block's own stochastic-depth layers (any class named like DropPath)."""
    return [name for name, layer in block.named_sublayers()
            if "droppath" in type(layer).__name__.lower().replace("_", "")]


@dataclass
class Block:
    """One removable block. ``skip_ops``: the traced ops on its identity path, input side first;
    ``tail``: elementwise ops on that path checked to be the identity on the block's input
    (e.g. the ReLU after ``x + f(x)``); ``residual`` is False only for a block forced by a pattern."""

    index: int
    path: str
    params: int
    own_droppath: list[str] = field(default_factory=list)
    flops: int = 0
    residual: bool = True
    skip_ops: list[str] = field(default_factory=list)
    branches: int = 0
    tail: list[str] = field(default_factory=list)
    note: str = ""
    extra_args: list[str] = field(default_factory=list)   # the call's other positional arguments (``blk(x, H, W)``)

    @property
    def droppath(self) -> str:
        return "own" if self.own_droppath else "wrapped"

    def to_json(self) -> dict:
        out = {"index": self.index, "path": self.path, "params": self.params, "droppath": self.droppath,
               "own_droppath": self.own_droppath, "flops": self.flops, "residual": self.residual,
               "skip": list(dict.fromkeys(self.skip_ops)), "branches": self.branches}
        if self.tail:
            out["tail"] = list(dict.fromkeys(self.tail))
        if self.note:
            out["note"] = self.note
        if self.extra_args:
            out["extra_args"] = list(self.extra_args)
        return out

    def removed_unit(self) -> RemovedUnit:
        """This block as a plan records it and surgery removes it."""
        return RemovedUnit.of_block(self.path, self.own_droppath, self.index, self.params, self.flops)


@dataclass
class Discovery:
    """What block discovery found: the blocks in forward order, every other sublayer with the reason
    it is not a block, and the pattern used (None: by skip connection)."""

    blocks: list[Block]
    rejected: list[Rejection]
    pattern: str | None = None
    probe_seconds: float = 0.0


def _uncovered(path: str, info: PathInfo, own: list[str]) -> list[str]:
    """The residual summands of a block that none of its own DropPath layers returns (``x + pos(x)`` beside
    ``x + drop_path(attn(x))``): its own DropPath cannot switch the whole block off."""
    mine = {f"{path}.{name}" for name in own}
    out = []
    for node in info.summands:
        if not mine & set(getattr(node, "producers", [])):
            who = next((q for q in node.producers if q.startswith(path + ".")), None)
            out.append(who[len(path) + 1:] if who else "a computed tensor")
    return out


def _block(trace: ProbeTrace, index: int, path: str, info: PathInfo, note: str = "") -> Block:
    layer = trace.sublayers[path]
    tail = list(dict.fromkeys(info.tail[::-1])) if info.ok else []
    if info.ok and tail and not note:
        note = (f"post-activation: {', '.join(tail)} on the skip path is the identity on this block's input "
                "(checked on the probe)")
    own = find_own_droppath(layer)
    missed = _uncovered(path, info, own) if info.ok and own else []
    if missed:   # drive it whole, through hooks: dropping it then gives exactly the input, as its removal does
        own, note = [], (note + "; " if note else "") + (
            f"its own DropPath does not cover every branch ({', '.join(dict.fromkeys(missed))} is added without "
            "it): DropPath is applied to the whole block instead")
    return Block(index, path, n_params(trace, path), own, residual=info.ok,
                 skip_ops=info.ops[::-1] if info.ok else [], branches=info.branches, tail=tail, note=note,
                 extra_args=list(trace.calls[path].extra))


def _mark_inside(rejected: list[Rejection], block_paths: list[str]) -> list[Rejection]:
    for r in rejected:
        r.inside = next((b for b in block_paths if r.path.startswith(b + ".")), None)
    return rejected


def _probe(model, input_shape, seed: int) -> ProbeTrace:
    try:
        return probe_trace(model, tuple(input_shape), seed=seed)
    except Exception as e:  # noqa: BLE001 - the user's model code can raise anything
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CompressError(f"the model's forward pass failed on a random input of shape [2, "
                            f"{', '.join(map(str, input_shape))}] while looking for its blocks: "
                            f"{type(e).__name__}: {msg} (is `input_shape` right?)", param="input_shape") from None


def _by_skip(model, input_shape, seed: int) -> Discovery:
    trace = _probe(model, input_shape, seed)
    paths, infos, rejected = follow_paths(outermost_blocks, trace)
    good, failed = surgery_check(model, tuple(input_shape), paths, trace.output_shape)
    blocks = [_block(trace, i, p, infos[p]) for i, p in enumerate(good)]
    return Discovery(blocks, _mark_inside(rejected + failed, good), None, trace.seconds)


# ----------------------------------------------------------------------------- user patterns
def compile_pattern(pattern: str) -> re.Pattern:
    """``re:...``, or a pattern with regex-only syntax (``\\ ^ $ + ( ) { } |``), is a regular expression
    (full match); otherwise a glob over dotted paths where ``*`` stays within one segment and ``**``
    crosses segments (``features.*``: the direct children of ``features``)."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise CompressError("`blocks_from` must be a non-empty path pattern, e.g. 'features.*' or 're:blocks\\.\\d+'",
                            param="blocks_from")
    try:
        if pattern.startswith("re:"):
            return re.compile(pattern[3:])
        body = pattern[5:] if pattern.startswith("glob:") else pattern
        if not pattern.startswith("glob:") and re.search(r"[\\^$+(){}|]", pattern):
            return re.compile(pattern)
    except re.error as e:
        raise CompressError(f"`blocks_from` {pattern!r} is not a valid regular expression: {e}",
                            param="blocks_from") from None
    parts = re.split(r"(\*\*|\*|\?)", body)
    return re.compile("".join({"**": ".*", "*": "[^.]*", "?": "[^.]"}.get(p, re.escape(p)) for p in parts))


def _selected(trace: ProbeTrace, rx: re.Pattern) -> tuple[list[str], list[Rejection]]:
    """Matching paths that can be a block (called once, one tensor, same shape, not an identity), outermost."""
    valid, rejected = [], []
    for p, c in trace.calls.items():
        if not rx.fullmatch(p):
            continue
        problem = call_problem(c)
        if problem is None and c.y is c.x:
            problem = ("identity", "returns its input unchanged (a removed block, or Identity/Dropout at eval)")
        if problem is None:
            valid.append(p)
        else:
            rejected.append(Rejection(p, problem[1], problem[0], c.leaf))
    outer = []
    for p in sorted(valid, key=lambda q: trace.calls[q].order):
        parent = next((q for q in valid if p.startswith(q + ".")), None)
        if parent is None:
            outer.append(p)
        else:
            rejected.append(Rejection(p, f"nested inside matched block {parent}", "nested", trace.calls[p].leaf))
    return outer, rejected


def _by_pattern(model, input_shape, pattern: str, seed: int) -> Discovery:
    rx = compile_pattern(pattern)
    trace = _probe(model, input_shape, seed)
    paths, rejected = _selected(trace, rx)
    if not paths and not rejected:
        raise CompressError(f"`blocks_from` {pattern!r} matches no sublayer of the model (the blocks command with "
                            "`verbose` twice lists every path)", param=("blocks_from", "verbose"))
    good, failed = surgery_check(model, tuple(input_shape), paths, trace.output_shape)
    blocks = []
    for i, p in enumerate(good):
        info = follow_paths(analyse, trace.calls[p])
        note = "" if info.ok else f"no skip connection ({info.reason}): removing it is not stochastic depth"
        blocks.append(_block(trace, i, p, info, note))
    return Discovery(blocks, _mark_inside(rejected + failed, good), pattern, trace.seconds)


# ----------------------------------------------------------------------------- the API
def discover_blocks(model, input_shape, pattern: str | None = None, seed: int = 0) -> Discovery:
    """The removable blocks of ``model`` and, for every other sublayer, why it is not one.

    ``pattern`` (``--blocks-from``): the blocks are the sublayers whose path matches it (see
    :func:`compile_pattern`) instead of those found by their skip connection.
    """
    if pattern is not None:
        return _by_pattern(model, input_shape, pattern, seed)
    return _by_skip(model, input_shape, seed)


def find_blocks(model, input_shape, pattern: str | None = None) -> list[Block]:
    """Removable blocks in forward order (see :func:`discover_blocks`)."""
    return discover_blocks(model, input_shape, pattern).blocks


NO_BLOCKS = ("no sublayer's input reaches its output through additions only (a residual connection), so there is "
             "no block to drop or remove (VGG- and PP-LCNet-style networks have none)")

# rejection kinds of a residual layer that is no block, as the headline words them (plural)
_WHY_NOT = {"signature": "cannot be called as a block", "shared": "are called more than once per forward",
            "surgery": "cannot be taken out of the forward pass", "nested": "are nested inside other residual layers"}


def _main_reason(found: "Discovery | None") -> str | None:
    """'12 residual layers were found, but ...': the commonest reason that residual layers were rejected, with
    an example; None when no rejected layer looked residual."""
    if found is None:
        return None
    cands = [r for r in found.rejected if r.residual and r.kind in _WHY_NOT]
    if not cands:
        return None
    kinds = [r.kind for r in cands]
    kind = max(dict.fromkeys(kinds), key=kinds.count)
    first = next(r for r in cands if r.kind == kind)
    others = len(cands) - kinds.count(kind)
    return (f"{len(cands)} residual layer{'s' if len(cands) != 1 else ''} (x + f(x)) were found, but "
            f"{kinds.count(kind)} {_WHY_NOT[kind]}, e.g. {first.path}: {first.reason}"
            + (f" ({others} more for other reasons)" if others else ""))


def no_blocks_message(pattern: str | None = None, found: "Discovery | None" = None) -> str:
    """Why a model has no removable block, and what to do about it: the main reason of the residual-looking
    candidates when there were any (``found``), else that there is no residual connection at all."""
    if pattern is not None:
        return (f"`blocks_from` {pattern!r} selects no removable block (a match must be called once, take a "
                "tensor first and keep its shape)")
    main = _main_reason(found)
    return ((main if main else NO_BLOCKS) + "; the blocks command with `verbose` shows why each candidate was "
            "rejected, and `blocks_from` PATTERN picks blocks by path")


def explain_no_blocks(model, input_shape, pattern: str | None = None) -> str:
    """:func:`no_blocks_message` for a model found to have no block (discovery run again for its reasons: only on
    this error path)."""
    try:
        found = discover_blocks(model, input_shape, pattern) if pattern is None else None
    except CompressError:
        found = None
    return no_blocks_message(pattern, found)


@dataclass
class RejectionGroup:
    """Rejections of one kind, for a readable listing."""

    kind: str
    title: str
    rejected: list[Rejection]


def _ancestors(path: str):
    parts = path.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def group_rejections(found: Discovery, everything: bool = False) -> tuple[list[RejectionGroup], int]:
    """(groups in :data:`REJECTION_KINDS` order, how many rejections were left out).

    Unless ``everything``, the listing keeps to the candidates a reader would weigh: it leaves out
    leaf layers (conv, norm, activation), containers that are never called, the insides of blocks
    (but not residual layers nested in them) and the insides of rejected layers that hold no block
    (the layers of a downsampling unit). A rejected layer that is residual (``Rejection.residual``: called
    with a second stream, shared, held where surgery cannot reach it) is always shown.
    """
    block_paths = {b.path for b in found.blocks}
    holders = {a for p in block_paths for a in _ancestors(p)}
    rejected_units = {r.path for r in found.rejected if not r.leaf and r.path not in holders}

    def shown(r: Rejection) -> bool:
        if r.kind == "nested" or r.residual:   # a residual candidate is always shown, in any container
            return True
        return (r.kind != "not-called" and not r.leaf and r.inside is None
                and not _ancestors(r.path) & rejected_units)

    kept = [r for r in found.rejected if everything or shown(r)]
    groups = [RejectionGroup(kind, title, [r for r in kept if r.kind == kind])
              for kind, title in REJECTION_KINDS.items()]
    return [g for g in groups if g.rejected], len(found.rejected) - len(kept)
