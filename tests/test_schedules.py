import numpy as np
import pytest

from compress.common.errors import CompressError
from compress.training.schedules import SCHEDULES, make_schedule, n_keep
from compress.training.statistics import SurvivalStats


def test_uniform_and_linear_values():
    np.testing.assert_allclose(make_schedule("uniform", 4, 0.2).rates(0, 10), [0.2] * 4)
    np.testing.assert_allclose(make_schedule("linear", 5, 0.3).rates(0, 10), [0, 0.075, 0.15, 0.225, 0.3])
    assert set(SCHEDULES) == {"uniform", "linear", "adaptive"}


def test_rate_validation():
    with pytest.raises(CompressError):
        make_schedule("uniform", 4, 1.0)
    with pytest.raises(CompressError):
        make_schedule("nope", 4, 0.1)


def _stats_with_importance(imps):
    st = SurvivalStats(len(imps))
    rng = np.random.default_rng(0)
    for _ in range(200):
        masks = rng.random((len(imps), 32)) > 0.3
        losses = 1.0 + ((~masks) * np.array(imps)[:, None]).sum(0) + rng.normal(0, 0.01, 32)
        st.update(masks, losses)
    return st


def test_adaptive_holds_mean_and_drops_unimportant_most():
    sched = make_schedule("adaptive", 4, 0.3, warmup=1)
    st = _stats_with_importance([0.5, 0.05, 1.0, 0.3])
    assert np.allclose(sched.rates(0, 10, st), 0.3)          # warm-up
    r = sched.rates(1, 10, st)
    assert abs(r.mean() - 0.3) < 1e-6
    assert r.argmax() == 1 and r.argmin() == 2


def test_adaptive_with_target_keep_anneals_the_least_important():
    sched = make_schedule("adaptive", 4, 0.2, target_keep=0.5, warmup=1)
    st = _stats_with_importance([0.5, 0.05, 1.0, 0.01])
    mid, end = sched.rates(3, 10, st), sched.rates(9, 10, st)
    assert sched.targeted == [1, 3]
    assert np.allclose(end[[0, 2]], sched.floor) and np.allclose(end[[1, 3]], sched.max_rate)
    assert sched.floor < mid[1] < end[1]


def test_n_keep_rounding():
    assert n_keep(8, 0.8) == 6      # 6.4 -> 6
    assert n_keep(8, 0.75) == 6
    assert n_keep(10, 0.25) == 3    # 2.5 rounds half up
    assert n_keep(8, 0.01) == 1     # at least one


def test_adaptive_target_set_is_stable_under_noise_but_follows_clear_changes():
    sched = make_schedule("adaptive", 4, 0.2, target_keep=0.5, warmup=1)
    sched.rates(1, 10, _stats_with_importance([0.5, 0.05, 1.0, 0.01]))
    assert sched.targeted == [1, 3]
    # block 0 now looks marginally less important than block 1: within noise, no swap
    sched.rates(2, 10, _stats_with_importance([0.049, 0.05, 1.0, 0.01]))
    assert sched.targeted == [1, 3]
    # block 1 becomes clearly important: it is swapped for the least important of the rest
    sched.rates(3, 10, _stats_with_importance([0.4, 0.9, 1.0, 0.01]))
    assert sched.targeted == [0, 3]


def test_adaptive_holds_the_mean_when_clipping_saturates():
    sched = make_schedule("adaptive", 4, 0.3, warmup=0)
    r = sched.rates(1, 10, _stats_with_importance([1.0, 0.0005, 1.2, 0.9]))
    assert abs(r.mean() - 0.3) < 1e-6 and r[1] == sched.cap and r.min() >= sched.floor
