
import numpy as np
import pytest

from compress.graph.blocks import find_blocks
from compress.pruning.criteria import CRITERIA, Context, select
from compress.data import ModelData
from compress.common.errors import CompressError
from tiny_models import TinyCNN, TinyTransformer


def _ctx(stats=None, schedule="adaptive", model=None, data=None, n=8, seed=0):
    from compress.graph.blocks import Block

    blocks = [Block(i, f"b.{i}", 10) for i in range(n)]
    return Context(blocks=blocks, stats=stats, schedule=schedule, model=model, input_shape=(1, 8, 8), data=data, seed=seed)


def _stats(survival, importance, resid=None):
    return [{"block": f"b.{i}", "survival_rate": s, "importance": imp, "residual_ratio": (resid or [1] * len(survival))[i]}
            for i, (s, imp) in enumerate(zip(survival, importance))]


def test_registry_names():
    assert set(CRITERIA) == {"survival", "importance", "residual", "every-other", "last", "random",
                             "block-influence", "angular"}


def test_survival_under_adaptive_then_importance_breaks_ties():
    st = _stats([0.95, 0.1, 0.95, 0.1, 0.95, 0.1, 0.95, 0.95], [1, 0.5, 2, -0.1, 3, 0.2, 0.05, 4])
    assert select("survival", _ctx(st), 3) == [1, 3, 5]
    # one more than the rarely-surviving set: the least important of the rest
    assert select("survival", _ctx(st), 4) == [1, 3, 5, 6]


def test_survival_under_fixed_schedule_uses_importance_only():
    st = _stats([1.0, 0.96, 0.91, 0.87, 0.83, 0.79, 0.74, 0.7], [1, 0.5, 2, -0.1, 3, 0.2, 0.05, 4])
    assert select("survival", _ctx(st, schedule="linear"), 3) == [3, 5, 6]
    assert select("importance", _ctx(st), 2) == [3, 6]


def test_unknown_importance_counts_as_important():
    st = _stats([1.0] * 4, [None, 0.3, 0.1, 0.2])
    assert select("importance", _ctx(st, n=4), 1) == [2]
    assert 0 not in select("importance", _ctx(st, n=4), 3)


def test_baselines():
    assert select("every-other", _ctx(), 4) == [1, 3, 5, 7]
    assert len(select("every-other", _ctx(), 3)) == 3
    assert select("last", _ctx(), 3) == [5, 6, 7]
    r = select("random", _ctx(seed=1), 3)
    assert r == select("random", _ctx(seed=1), 3) and len(set(r)) == 3
    assert select("residual", _ctx(_stats([1] * 8, [1] * 8, [5, 1, 4, 0.5, 3, 2, 6, 7])), 2) == [1, 3]


def test_statistics_needed():
    with pytest.raises(CompressError, match="compress train"):
        select("survival", _ctx(None), 2)
    with pytest.raises(CompressError, match="unknown criterion"):
        select("magic", _ctx(None), 2)


def test_activation_criteria_on_a_real_model():
    model = TinyTransformer()
    blocks = find_blocks(model, (1, 8, 8))
    # make block 2 an exact identity: zero its last linear layer
    last = model.groups[1][0].mlp[2]
    last.weight.set_value(np.zeros(last.weight.shape, np.float32))
    last.bias.set_value(np.zeros(last.bias.shape, np.float32))
    ctx = Context(blocks=blocks, stats=None, schedule=None, model=model, input_shape=(1, 8, 8),
                  data=ModelData.open("digits", (1, 8, 8)))
    assert select("block-influence", ctx, 1) == [2]
    run = select("angular", ctx, 2)
    assert len(run) == 2 and run[1] - run[0] == 1


def test_angular_needs_a_contiguous_same_shape_run():
    model = TinyCNN()
    ctx = Context(blocks=find_blocks(model, (1, 8, 8)), stats=None, schedule=None, model=model,
                  input_shape=(1, 8, 8), data=ModelData.open("digits", (1, 8, 8)))
    assert select("angular", ctx, 2) in ([0, 1], [2, 3])
    with pytest.raises(CompressError, match="contiguous"):
        select("angular", ctx, 3)


def test_survival_of_an_adaptive_run_that_never_adapted_ranks_by_importance_and_says_so():
    from compress.pruning.criteria import evidence_warnings
    st = _stats([0.95, 0.1, 0.95, 0.1, 0.95, 0.1, 0.95, 0.95], [1, 0.5, 2, -0.1, 3, 0.2, 0.05, 4])
    stuck = _ctx(st)
    stuck.adapted = False
    assert select("survival", stuck, 3) == select("importance", stuck, 3) == [3, 5, 6]
    assert "never adapted" in evidence_warnings(stuck, "survival")[0]
    assert "mirrors the drop rates" in evidence_warnings(_ctx(st, schedule="linear"), "survival")[0]
    assert evidence_warnings(_ctx(st), "survival") == []   # adapted, with no sample counts: nothing to doubt


def test_empty_statistics_are_refused_naming_the_criteria_that_need_none():
    empty = _stats([None] * 8, [None] * 8)
    for name in ("survival", "importance"):
        with pytest.raises(CompressError, match="are empty.*every-other, last, random, block-influence, angular"):
            select(name, _ctx(empty), 2)


def test_units_dropped_on_few_samples_are_named():
    from compress.pruning.criteria import MIN_DROPPED, evidence_warnings
    st = _stats([0.9] * 4, [0.1, 0.2, 0.3, 0.4])
    for s, dropped in zip(st, (0, MIN_DROPPED - 1, MIN_DROPPED, 500)):   # never dropped: not measured, not thin
        s.update(samples_seen=1000, samples_kept=1000 - dropped)
    (w,) = evidence_warnings(_ctx(st, n=4), "importance")
    assert w.startswith(f"1 of 4 units were dropped on fewer than {MIN_DROPPED} samples (b.1)")
