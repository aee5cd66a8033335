"""What to remove: a target (a share of the blocks, a FLOPs budget, or explicit blocks) turned into units.

A *unit* is what one removal takes out. The budget rule below only sees each unit's FLOPs and its
criterion cost, indexed by the unit's position.

**FLOPs budget** (``keep_flops`` F): remove units until the model's FLOPs are at most F of the
original (:func:`budget_removal`):

1. Units are taken in order of *cost per FLOP* — the criterion's score of the unit (clipped at 0:
   a unit whose removal did not hurt costs nothing), divided by the FLOPs it removes — cheapest
   first; among equals the one removing more FLOPs first. Units are added until the budget is met
   (at least one unit always stays).
2. Then, in reverse order (most costly per FLOP first), every removed unit whose return still
   keeps the model within the budget is put back: with units of unequal cost (ResNet stages, where
   a late block costs as much as several early ones) a large unit taken late can make small ones
   taken earlier unnecessary.

3. Under branch granularity (units of unequal size: attention and MLP branches, whole blocks), a removed
   unit is then traded for a kept one of lower criterion cost whenever the model stays within the budget
   (:func:`_swapped`): the greedy's last pick can be a large unit where a smaller, cheaper one would do.
   Block-level plans do not take this step (they stay as they were).

A *unit* is a whole block, or under ``granularity`` branch one branch of a block (an attention or MLP
branch, :mod:`compress.graph.branches`); a block all of whose branches go is removed whole.

This is the classic greedy for the knapsack problem "lose the least criterion score while removing at
least (1 - F) of the FLOPs". Criteria that only pick a set of a given size (``every-other``, ``last``,
``random``, ``angular``) have no per-unit score: for them the smallest number of units whose pick meets
the budget is removed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .criteria import COSTS, Context, check_criterion, select
from ..common.errors import CompressError


@dataclass
class PruneTarget:
    """How much to remove: exactly one of ``keep`` (share of the blocks kept, in (0, 1]), ``keep_flops``
    (share of the FLOPs kept at most, in (0, 1]) or ``blocks`` (explicit block indices).
    Validates itself on construction (errors name the parameter)."""

    keep: float | None = None
    keep_flops: float | None = None
    blocks: list[int] | None = None

    def __post_init__(self):
        given = [p for p in ("keep", "keep_flops", "blocks") if getattr(self, p) is not None]
        if len(given) > 1:
            raise CompressError(f"give one of `keep`, `keep_flops` or `blocks`, not {' and '.join(f'`{p}`' for p in given)}",
                                param=("keep", "keep_flops", "blocks"))
        if not given:
            raise CompressError("give `keep` K (0 < K <= 1), `keep_flops` F (0 < F <= 1) or `blocks` i,j,...",
                                param=("keep", "keep_flops", "blocks"))
        for name in ("keep", "keep_flops"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and 0.0 < v <= 1.0):
                raise CompressError(f"`{name}` must be in (0, 1], got {v}", param=name)


def _order(flops: list[int], costs: list[float]) -> list[int]:
    """Unit indices, cheapest criterion cost per removed FLOP first (more FLOPs first among equals)."""
    def key(i):
        c = max(float(costs[i]), 0.0) if not math.isnan(costs[i]) else math.inf
        return (c / max(flops[i], 1), -flops[i], i)
    return sorted(range(len(flops)), key=key)


def _unreachable(flops: list[int], total: int, keep_flops: float) -> CompressError:
    best = total - sum(sorted(flops, reverse=True)[:len(flops) - 1])
    return CompressError(f"`keep_flops` {keep_flops:g} is out of reach: removing every block but one leaves "
                         f"{best / total:.3f} of the FLOPs (the rest is outside the removable blocks)",
                         param="keep_flops")


def _cost(c: float) -> float:
    return max(float(c), 0.0) if not math.isnan(c) else math.inf


def _swapped(removed: list[int], flops: list[int], costs: list[float], left: int, limit: float) -> list[int]:
    """Rule 3 (``refine``): while a removed unit can be traded for a kept one of lower cost that still keeps the
    model within the budget, trade it (most costly removed unit first; among candidates the cheapest). With
    units of unequal size (an attention and an MLP branch) the greedy's last pick can overshoot the budget by a
    large unit where a smaller, cheaper one would have done."""
    removed = list(removed)
    for _ in range(len(flops) * len(flops)):
        kept = [j for j in range(len(flops)) if j not in removed and flops[j] > 0]
        trade = None
        for i in sorted(removed, key=lambda i: -_cost(costs[i])):
            fits = [j for j in kept if _cost(costs[j]) < _cost(costs[i]) and left + flops[i] - flops[j] <= limit]
            if fits:
                trade = (i, min(fits, key=lambda j: (_cost(costs[j]), -flops[j], j)))
                break
        if trade is None:
            return removed
        i, j = trade
        removed[removed.index(i)] = j
        left += flops[i] - flops[j]
    return removed


def budget_removal(flops: list[int], costs: list[float], total: int, keep_flops: float,
                   refine: bool = False) -> list[int]:
    """The units to remove (sorted indices) so that ``total - sum(flops[removed]) <= keep_flops * total``,
    by the greedy rule in the module docstring (``refine``: then rule 3). ``flops``/``costs``: per unit; at
    least one unit stays."""
    limit = keep_flops * total
    if total <= limit:
        return []
    removed, left = [], total
    for i in _order(flops, costs):
        if left <= limit or len(removed) == len(flops) - 1:
            break
        if flops[i] > 0:
            removed.append(i)
            left -= flops[i]
    if left > limit:  # the cheapest units ran out before the budget did: fall back on the largest ones
        removed = sorted(range(len(flops)), key=lambda i: -flops[i])[:len(flops) - 1]
        left = total - sum(flops[i] for i in removed)
        if left > limit:
            raise _unreachable(flops, total, keep_flops)
    for i in reversed(removed[:]):  # put back what the budget does not need, most costly per FLOP first
        if left + flops[i] <= limit:
            removed.remove(i)
            left += flops[i]
    if refine:
        removed = _swapped(removed, flops, costs, left, limit)
    return sorted(removed)


def _smallest_pick(criterion: str, ctx: Context, flops: list[int], total: int, keep_flops: float) -> list[int]:
    """For a criterion without per-unit scores: its pick of the fewest units that meets the budget."""
    limit = keep_flops * total
    if total <= limit:
        return []
    for n in range(1, len(flops)):
        pick = select(criterion, ctx, n)
        if total - sum(flops[i] for i in pick) <= limit:
            return pick
    raise _unreachable(flops, total, keep_flops)


def flops_budget(criterion: str, ctx: Context, flops: list[int], total: int, keep_flops: float,
                 refine: bool = False) -> list[int]:
    """Units to remove (sorted indices into ``ctx.blocks``) so that at most ``keep_flops`` of ``total`` stays
    (``refine``: trade units after the greedy, rule 3; used for branch units)."""
    check_criterion(criterion)
    if criterion in COSTS:
        return budget_removal(flops, COSTS[criterion](ctx), total, keep_flops, refine)
    return _smallest_pick(criterion, ctx, flops, total, keep_flops)
