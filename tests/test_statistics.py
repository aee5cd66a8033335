import math

import numpy as np

from compress.data import ModelData
from compress.graph.blocks import find_blocks
from compress.training.statistics import SurvivalStats
from compress.training.config import FitConfig
from compress.training.loop import fit
from tiny_models import TinyCNN


def test_streamed_sums_match_direct_computation():
    # importance compares batch-centred losses of samples that skipped vs went through a block
    rng = np.random.default_rng(0)
    masks = rng.random((3, 500)) > 0.4
    losses = rng.random(500)
    st = SurvivalStats(3)
    for i in range(0, 500, 50):
        st.update(masks[:, i:i + 50], losses[i:i + 50])
    s = st.summary()
    for b in range(3):
        c = np.concatenate([losses[i:i + 50] - losses[i:i + 50].mean() for i in range(0, 500, 50)])
        k, d = c[masks[b]], c[~masks[b]]
        assert s[b]["samples_seen"] == 500 and s[b]["samples_kept"] == masks[b].sum()
        assert math.isclose(s[b]["importance"], d.mean() - k.mean(), rel_tol=1e-9)
        se = math.sqrt(k.var(ddof=1) / len(k) + d.var(ddof=1) / len(d))
        assert math.isclose(s[b]["importance_stderr"], se, rel_tol=1e-6)
    # memory does not grow with the data: only fixed-size sums are kept
    assert all(v.shape == (3,) for v in st.sums.values())


def test_useless_block_has_no_importance_and_is_dropped_most():
    ds = ModelData.open("digits", (1, 8, 8))
    model = TinyCNN(useless=1)
    blocks = find_blocks(model, (1, 8, 8))
    cfg = FitConfig(epochs=4, batch_size=64, lr=5e-3, seed=0, drop_path_rate=0.3, schedule="adaptive",
                    warmup_epochs=2)
    res = fit(model, ds, cfg, blocks=blocks)
    s = res.stats.summary()
    imp = [b["importance"] for b in s]
    se = [b["importance_stderr"] for b in s]
    assert abs(imp[1]) < 3 * se[1] + 1e-3            # no measurable effect
    assert imp[1] == min(imp)
    others = [i for i in range(4) if i != 1]
    assert max(imp[i] for i in others) > 3 * se[1]   # the real blocks matter
    last_rates = res.history[-1]["rates"]
    assert int(np.argmax(last_rates)) == 1
    assert abs(np.mean(last_rates) - 0.3) < 1e-3
