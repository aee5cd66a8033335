"""Branches: the finer units inside a block that carries its own DropPath.

A transformer block applies stochastic depth per residual branch: timm calls ``drop_path1`` on the
attention branch and ``drop_path2`` on the MLP branch; PaddleClas-style blocks call one ``drop_path``
layer twice. A block with its own DropPath layer(s) has one **branch** per DropPath *call* in its
forward; the branch's **body** is the block's direct children that run between the previous DropPath
call (or the block's input) and this one (``norm1, attn`` / ``norm2, mlp``). The last child of a body
is its *compute*, whose output the DropPath receives; the others are its pre-layers (the pre-norm).

Found in one probe forward pass (hooks on the block's direct children). A block stays one whole unit
when it has no DropPath of its own (wrapped blocks), calls its DropPath fewer than twice, calls it from
inside a child, or when a child runs in two branches. Under ``granularity`` "branch" the units of a
model (:func:`units_with_flops`) are its branches where it has them and its whole blocks elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import paddle

from .blocks import Block, find_blocks
from ..common.errors import CompressError
from .flops import count_flops
from ..common.layers import count_params, get_sublayer, probe_forward
from .surgery import RemovedUnit, ZeroBranch

GRANULARITIES = ("block", "branch")
_ATTN_WORDS = ("attn", "attention", "mixer", "token")
_MLP_WORDS = ("mlp", "ffn", "feedforward", "feed_forward", "fc", "channel")


def check_granularity(granularity: str | None, param: str = "granularity") -> str | None:
    """``granularity`` if it is one of :data:`GRANULARITIES` (or None: the caller's default)."""
    if granularity is not None and granularity not in GRANULARITIES:
        raise CompressError(f"`{param}` must be one of {', '.join(GRANULARITIES)}, got {granularity!r}", param=param)
    return granularity


@dataclass
class Branch:
    """One branch of a block: the ``call``-th DropPath call of block ``block`` (at ``block_path``),
    whose body is the block's children ``body`` (compute last); ``shape``: the compute's output
    shape without the batch dimension (what a removed branch's zeros take)."""

    block: int
    block_path: str
    call: int
    droppath: str
    body: list[str]
    kind: str
    shape: list[int]
    params: int = 0
    flops: int = 0
    index: int = 0          # position in the model's unit list
    name: str = ""          # unique unit name, e.g. blocks.3:attn
    block_droppath: list[str] = field(default_factory=list)   # all the block's own DropPath layers

    @property
    def path(self) -> str:
        """The unit's name (what statistics and plans key it by); the block's path is ``block_path``."""
        return self.name

    @property
    def own_droppath(self) -> list[str]:
        return [self.droppath]

    @property
    def compute(self) -> str:
        return self.body[-1]

    @property
    def label(self) -> str:
        return f"{self.kind} at depth {self.block}"

    def to_json(self) -> dict:
        return {"index": self.index, "unit": self.name, "block": self.block, "block_path": self.block_path,
                "call": self.call, "kind": self.kind, "droppath": self.droppath, "body": list(self.body),
                "shape": list(self.shape), "params": self.params, "flops": self.flops}

    def removed_unit(self) -> RemovedUnit:
        """This branch as a plan records it and surgery removes it (its block's DropPath layers, its call)."""
        return RemovedUnit("branch", self.name, self.index, tuple(self.block_droppath), self.params, self.flops,
                           self.block_path, self.block, self.call, self.kind, self.label, self.removal())

    def removal(self) -> dict:
        """What the sidecar records of a removed branch (enough to remove it again on load)."""
        return {"block": self.block_path, "call": self.call, "kind": self.kind, "depth": self.block,
                "body": list(self.body), "shape": list(self.shape)}


def _kind(block, body: list[str], k: int) -> str:
    words = " ".join(body + [type(getattr(block, c)).__name__ for c in body]).lower()
    if any(w in words for w in _ATTN_WORDS):
        return "attn"
    if any(w in words for w in _MLP_WORDS):
        return "mlp"
    return f"branch{k}"


def _calls(model, input_shape, blocks: list[Block]) -> dict[str, list[tuple[str, list[int]]]]:
    """Per block path: its direct children in call order, each with its output shape (no batch)."""
    seen: dict[str, list] = {b.path: [] for b in blocks}
    handles = []
    for b in blocks:
        layer = get_sublayer(model, b.path)
        for name, child in layer.named_children():
            def hook(_l, _i, out, key=b.path, name=name):
                shape = list(out.shape[1:]) if isinstance(out, paddle.Tensor) else None
                seen[key].append((name, shape))
            handles.append(child.register_forward_post_hook(hook))
    probe_forward(model, paddle.zeros([2, *input_shape]), handles)
    return seen


def _split(calls: list[tuple[str, list[int]]], droppaths: set[str]):
    """[(droppath name, body, compute output shape)] per DropPath call, or None if the block is not splittable."""
    out, body, used = [], [], set()
    for name, shape in calls:
        if name not in droppaths:
            body.append((name, shape))
            continue
        names = [n for n, _ in body]
        if not body or used & set(names) or len(set(names)) != len(names) or body[-1][1] is None:
            return None
        used |= set(names)
        out.append((name, names, body[-1][1]))
        body = []
    return out if len(out) >= 2 else None


def _is_removed(block, body: list[str]) -> bool:
    return isinstance(getattr(block, body[-1], None), ZeroBranch)


def find_branches(model, input_shape, blocks: list[Block]) -> dict[int, list[Branch]]:
    """Block index -> its branches (only blocks that split; removed branches left out, their calls kept)."""
    own = [b for b in blocks if b.own_droppath]
    if not own:
        return {}
    calls = _calls(model, input_shape, own)
    found = {}
    for b in own:
        direct = {n for n in b.own_droppath if "." not in n}
        parts = _split(calls[b.path], direct) if direct == set(b.own_droppath) else None
        if parts is None:
            continue
        layer = get_sublayer(model, b.path)
        kinds = [_kind(layer, body, k) for k, (_, body, _) in enumerate(parts)]
        if len(set(kinds)) != len(kinds):
            kinds = [f"branch{k}" for k in range(len(parts))]
        branches = [Branch(b.index, b.path, k, dp, body, kinds[k], shape,
                           params=sum(count_params(getattr(layer, c)) for c in body), name=f"{b.path}:{kinds[k]}",
                           block_droppath=list(b.own_droppath))
                    for k, (dp, body, shape) in enumerate(parts)]
        branches = [br for br in branches if not _is_removed(layer, br.body)]
        if branches:
            found[b.index] = branches
    for i, br in enumerate(br for bs in found.values() for br in bs):
        br.index = i
    return found


def units_of(blocks: list[Block], branches: dict[int, list[Branch]], granularity: str) -> list:
    """The units under ``granularity``: the blocks, or each block's branches where it has them; indexed in order."""
    if granularity == "block":
        return list(blocks)
    units = []
    for b in blocks:
        units.extend(branches.get(b.index, [b]))
    for i, u in enumerate(units):
        if isinstance(u, Branch):
            u.index = i
    return units


def flops_regions(branches) -> dict[str, list[str]]:
    """Branch name -> the sublayer paths of its body: what :func:`compress.graph.flops.count_flops` attributes to it."""
    return {br.name: [f"{br.block_path}.{c}" for c in br.body] for br in branches}


def units_with_flops(model, input_shape, pattern: str | None = None, granularity: str = "block"):
    """(units, blocks, total FLOPs): the removable units under ``granularity`` with their FLOPs, the blocks
    (blocks and branches counted in one pass)."""
    blocks = find_blocks(model, input_shape, pattern)
    branches = find_branches(model, input_shape, blocks) if granularity == "branch" else {}
    split = [br for bs in branches.values() for br in bs]
    total, per = count_flops(model, input_shape, blocks, flops_regions(split))
    for u in blocks + split:
        u.flops = per[u.path]
    return units_of(blocks, branches, granularity), blocks, total


def sidecar_fields(granularity: str, units: list, removed_branches: list, had_removed: bool = False) -> dict:
    """A model's sidecar fields for branches: ``removed_branches`` (written when there are any, or as an empty
    list when ``had_removed``: the parent's must not carry over), and under ``granularity`` branch the
    granularity and the current branches; nothing for a block-level model that never lost a branch, so its
    file stays what it was."""
    out = {"removed_branches": list(removed_branches)} if removed_branches or had_removed else {}
    if granularity == "branch":
        out.update(granularity="branch", branches=[u.to_json() for u in units if isinstance(u, Branch)])
    return out


@dataclass
class UnitPlan:
    """Units to remove, turned into surgery: whole blocks (paths) and branches (records); a block whose
    every branch goes is removed whole."""

    block_paths: list[str] = field(default_factory=list)
    branches: list[Branch] = field(default_factory=list)


def surgery_plan(units: list, remove: list[int]) -> UnitPlan:
    """The surgery for removing ``units[i]`` for i in ``remove`` (a block whose every branch among ``units``
    goes is removed whole)."""
    all_branches: dict[str, int] = {}
    for u in units:
        if isinstance(u, Branch):
            all_branches[u.block_path] = all_branches.get(u.block_path, 0) + 1
    plan = UnitPlan()
    gone = [units[i] for i in remove]
    per_block: dict[str, list[Branch]] = {}
    for u in gone:
        if isinstance(u, Branch):
            per_block.setdefault(u.block_path, []).append(u)
        else:
            plan.block_paths.append(u.path)
    for path, brs in per_block.items():
        if len(brs) == all_branches.get(path, -1):
            plan.block_paths.append(path)
        else:
            plan.branches.extend(brs)
    return plan
