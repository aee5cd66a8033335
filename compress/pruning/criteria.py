"""Criteria that rank blocks for removal, in a registry keyed by name.

Each criterion returns the indices (into the model's current block list) of the
``n_remove`` blocks to remove. ``survival`` is the default; the others are the
baselines it is compared with on the same model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import paddle

from ..common.errors import CompressError
from ..common.layers import get_sublayer, probe_forward


@dataclass
class Context:
    blocks: list          # Block objects of the current model, in order
    stats: list | None    # per-block statistics dicts, aligned with blocks (None if never recorded)
    schedule: str | None  # name of the schedule the statistics were recorded under
    model: object = None
    input_shape: tuple = ()
    data: object = None   # a compress.data.ModelData, for activation-based criteria
    seed: int = 0
    adapted: bool = True  # False: an adaptive schedule that never left its warm-up (survival is then noise)

    @property
    def survival_informative(self) -> bool:
        """Survival says something beyond the schedule only under an adaptive schedule that adapted."""
        return self.schedule == "adaptive" and self.adapted


NO_STATS_CRITERIA = ("every-other", "last", "random", "block-influence", "angular")
MIN_DROPPED = 20   # dropped samples per unit below which its importance is too noisy to rank on


def _need_stats(ctx: Context, name: str):
    if not ctx.stats or any(s is None for s in ctx.stats):
        raise CompressError(f"criterion {name!r} needs survival statistics, which this model lacks; produce them "
                            "by training with `drop_path_rate` 0.2 and `schedule` adaptive (`compress train`)",
                            param=("drop_path_rate", "schedule"))
    if name in ("survival", "importance") and all(s.get("importance") is None for s in ctx.stats):
        raise CompressError(f"criterion {name!r} needs survival statistics, but this model's are empty (no unit was "
                            "ever dropped: trained 0 epochs, or at drop rate 0): train with DropPath first, or use a "
                            f"criterion that needs none: {', '.join(NO_STATS_CRITERIA)}", param="criterion")


def evidence_warnings(ctx: Context, criterion: str) -> list[str]:
    """One line per reason to doubt a ranking by ``criterion`` on these statistics (empty: none)."""
    out = []
    if criterion == "survival" and ctx.stats and not ctx.survival_informative:
        why = ("the adaptive schedule never adapted" if ctx.schedule == "adaptive"
               else f"under the {ctx.schedule or 'recorded'} schedule survival only mirrors the drop rates")
        out.append(f"survival carries no information here ({why}): the blocks were ranked by importance instead")
    if criterion in ("survival", "importance") and ctx.stats:
        thin = [s.get("block") for s in ctx.stats if s is not None
                and 0 < (s.get("samples_seen") or 0) - (s.get("samples_kept") or 0) < MIN_DROPPED]
        if thin:
            out.append(f"{len(thin)} of {len(ctx.stats)} units were dropped on fewer than {MIN_DROPPED} samples "
                       f"({', '.join(map(str, thin[:4]))}{', ...' if len(thin) > 4 else ''}): their importance is "
                       "noise; train longer or at a higher drop rate")
    return out


def _value(s, key, missing):
    v = s.get(key) if s else None
    return missing if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _lowest(scores, n):
    return sorted(np.argsort(np.asarray(scores, dtype=float), kind="stable")[:n].tolist())


def survival_costs(ctx: Context) -> list[float]:
    """Per block, what removing it costs by the ``survival`` criterion: under the adaptive schedule the
    survival rate (rounded to 0.01, as the ranking uses it: the share of samples that went through the
    block; one the network was trained to live without survived rarely); under a fixed schedule, where
    survival only mirrors the schedule, the importance."""
    _need_stats(ctx, "survival")
    if not ctx.survival_informative:
        return importance_costs(ctx)
    return [round(_value(s, "survival_rate", 1.0), 2) for s in ctx.stats]


def by_survival(ctx: Context, n: int) -> list[int]:
    """Blocks that rarely survived under the adaptive schedule first, importance breaking ties.

    Under a fixed schedule survival only mirrors the schedule, so importance alone ranks.
    """
    _need_stats(ctx, "survival")
    imp = importance_costs(ctx)
    if not ctx.survival_informative:
        return _lowest(imp, n)
    surv = survival_costs(ctx)
    order = sorted(range(len(surv)), key=lambda i: (surv[i], imp[i]))
    return sorted(order[:n])


def importance_costs(ctx: Context) -> list[float]:
    """Per block, its importance E[loss | dropped] - E[loss | kept] (unknown: infinite)."""
    _need_stats(ctx, "importance")
    return [_value(s, "importance", math.inf) for s in ctx.stats]


def by_importance(ctx, n):
    """Least important first: E[loss | dropped] - E[loss | kept] from the random drops."""
    return _lowest(importance_costs(ctx), n)


def residual_costs(ctx: Context) -> list[float]:
    """Per block, its residual ratio ||B(x) - x|| / ||x|| (unknown: infinite)."""
    _need_stats(ctx, "residual")
    return [_value(s, "residual_ratio", math.inf) for s in ctx.stats]


def by_residual(ctx, n):
    """Smallest residual ratio ||B(x) - x|| / ||x|| first."""
    return _lowest(residual_costs(ctx), n)


def every_other(ctx, n):
    """LayerDrop-style: evenly spaced blocks (every other one at half depth)."""
    L = len(ctx.blocks)
    picks = sorted({min(L - 1, int((k + 0.5) * L / n)) for k in range(n)})
    rest = [i for i in range(L - 1, -1, -1) if i not in picks]
    return sorted(picks + rest[:n - len(picks)])


def last(ctx, n):
    """The deepest blocks."""
    L = len(ctx.blocks)
    return list(range(L - n, L))


def random_blocks(ctx, n):
    """A seeded random choice."""
    return sorted(np.random.default_rng(ctx.seed).choice(len(ctx.blocks), size=n, replace=False).tolist())


def _block_io(ctx, max_samples=256):
    """Per block: (input, output) activations on validation data, flattened per sample."""
    if ctx.data is None:
        raise CompressError("this criterion needs images to run the model on: give `data`, or use a model whose "
                            "sidecar names its data source", param="data")
    x, _ = ctx.data.arrays("val" if ctx.data.size("val") else "train", max_samples)
    acts = {}
    handles = []
    for i, b in enumerate(ctx.blocks):
        layer = get_sublayer(ctx.model, b.path)
        handles.append(layer.register_forward_post_hook(
            lambda l, inp, out, i=i: acts.__setitem__(i, (inp[0].flatten(1).numpy(), out.flatten(1).numpy())) and None))
    probe_forward(ctx.model, paddle.to_tensor(x), handles)
    return acts


def _cos(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def influence_costs(ctx: Context) -> list[float]:
    """Per block, ShortGPT's block influence 1 - mean cos(x_in, x_out) on validation data."""
    acts = _block_io(ctx)
    return [1.0 - float(_cos(*acts[i]).mean()) for i in range(len(ctx.blocks))]


def angular_costs(ctx: Context) -> list[float]:
    """Per block, the angular distance between its own input and output, mean arccos(cos) / pi on validation data
    (Gromov et al.'s distance for a run of one block)."""
    acts = _block_io(ctx)
    return [float(np.mean(np.arccos(np.clip(_cos(*acts[i]), -1, 1)) / np.pi)) for i in range(len(ctx.blocks))]


def block_influence(ctx, n):
    """ShortGPT: BI = 1 - mean cos(x_in, x_out); the least influential blocks go."""
    return _lowest(influence_costs(ctx), n)


def angular(ctx, n):
    """Gromov et al.: the contiguous run of n blocks whose input and output are closest in angle."""
    acts = _block_io(ctx)
    best, best_d = None, math.inf
    for s in range(len(ctx.blocks) - n + 1):
        x_in, x_out = acts[s][0], acts[s + n - 1][1]
        if x_in.shape != x_out.shape:
            continue
        d = float(np.mean(np.arccos(np.clip(_cos(x_in, x_out), -1, 1)) / np.pi))
        if d < best_d:
            best, best_d = s, d
    if best is None:
        raise CompressError(f"criterion 'angular' needs {n} contiguous blocks of one shape; none exist here")
    return list(range(best, best + n))


CRITERIA = {
    "survival": by_survival,
    "importance": by_importance,
    "residual": by_residual,
    "every-other": every_other,
    "last": last,
    "random": random_blocks,
    "block-influence": block_influence,
    "angular": angular,
}
DEFAULT_CRITERION = "survival"
DATA_CRITERIA = {"block-influence", "angular"}
# Criteria on a block's input vs output: a branch has no output of its own (it adds into the residual stream)
BLOCK_ONLY_CRITERIA = {"block-influence", "angular"}
STATS_CRITERIA = {"survival", "importance", "residual"}   # read the statistics recorded while training
# Criteria that score every block on its own (the lower, the sooner it goes): a FLOPs budget weighs these scores
# against each block's FLOPs (compress.pruning.planning). The others only pick a set of a given size.
COSTS = {
    "survival": survival_costs,
    "importance": importance_costs,
    "residual": residual_costs,
    "block-influence": influence_costs,
}


def check_criterion(criterion: str) -> None:
    if criterion not in CRITERIA:
        raise CompressError(f"unknown criterion {criterion!r}: use one of {', '.join(CRITERIA)}", param="criterion")


def select(criterion: str, ctx: Context, n_remove: int) -> list[int]:
    check_criterion(criterion)
    if n_remove <= 0:
        return []
    return CRITERIA[criterion](ctx, n_remove)
