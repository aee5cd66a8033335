import numpy as np
import paddle
import pytest

from compress.training.droppath import DropPath, StochasticDepth
from compress.graph.blocks import find_blocks
from tiny_models import TinyCNN


@pytest.mark.parametrize("shape", [(4000, 3), (4000, 2, 3), (4000, 2, 3, 3)])
def test_per_sample_masks_and_expectation(shape):
    paddle.seed(0)
    dp = DropPath(0.3)
    dp.train()
    x = paddle.ones(shape)
    y = dp(x).numpy().reshape(shape[0], -1)
    # each sample is either all zero or all 1/keep: one mask per sample, any rank
    per_sample = np.unique(y, axis=1)
    assert per_sample.shape[1] == 1
    vals = np.unique(y)
    assert len(vals) == 2 and vals[0] == 0.0 and abs(vals[1] - 1 / 0.7) < 1e-5
    assert abs((y[:, 0] > 0).mean() - 0.7) < 0.03          # keep rate
    assert abs(y.mean() - 1.0) < 0.05                         # expectation preserved by 1/keep


def test_identity_in_eval_and_at_rate_zero():
    x = paddle.randn([8, 4, 5, 5])
    dp = DropPath(0.5)
    dp.eval()
    assert np.array_equal(dp(x).numpy(), x.numpy())
    dp0 = DropPath(0.0)
    dp0.train()
    assert np.array_equal(dp0(x).numpy(), x.numpy())


def test_no_scale_by_keep():
    paddle.seed(1)
    dp = DropPath(0.5, scale_by_keep=False)
    dp.train()
    y = dp(paddle.ones([100, 3])).numpy()
    assert set(np.unique(y)) <= {0.0, 1.0}


def test_rate_out_of_range():
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_wrapped_block_drop_is_identity_and_keep_scaled():
    paddle.seed(0)
    model = TinyCNN()
    blocks = find_blocks(model, (1, 8, 8))
    x = paddle.randn([64, 8, 8, 8])
    sd = StochasticDepth(model, blocks).attach()
    sd.set_rates(np.full(len(blocks), 0.5))
    model.train()
    block = model.stages[0][0]
    y = block(x).numpy()
    mask = sd.step_masks(64)[0]
    assert 0 < mask.sum() < 64
    np.testing.assert_allclose(y[~mask], x.numpy()[~mask])   # dropped samples pass straight through
    sd.set_rates(np.zeros(len(blocks)))
    raw = block(x).numpy()                                     # rate 0: the block itself
    np.testing.assert_allclose(y[mask], x.numpy()[mask] + (raw[mask] - x.numpy()[mask]) / 0.5, rtol=1e-4, atol=1e-4)
    model.eval()                                               # eval: no drop even at rate 0.5
    sd.set_rates(np.full(len(blocks), 0.5))
    np.testing.assert_array_equal(block(x).numpy(), block.forward(x).numpy())   # forward() bypasses hooks
    sd.detach()
    model.train()
    np.testing.assert_array_equal(block(x).numpy(), block.forward(x).numpy())   # hooks gone


def test_own_droppath_is_driven_with_one_mask_per_block():
    from compress.model.architectures import DropPath as TimmStyle
    from compress.model.bundle import ArchSpec, build_model

    paddle.seed(0)
    model = build_model(ArchSpec("vit_tiny", {"depth": 2, "dim": 16, "heads": 2}), (1, 16, 16), 10)
    blocks = find_blocks(model, (1, 16, 16))
    block = model.blocks[0]
    x = paddle.randn([64, 64, 16])
    model.eval()
    full = block(x).numpy()
    sd = StochasticDepth(model, blocks).attach()
    assert isinstance(block.drop_path, DropPath)          # the model's own layer is driven by compress
    sd.set_rates(np.full(len(blocks), 0.5))
    model.train()
    for layer in model.sublayers():                       # no other randomness in this block
        assert not isinstance(layer, paddle.nn.Dropout)
    y = block(x).numpy()
    mask = sd.step_masks(64)[0]
    assert 0 < mask.sum() < 64
    # both residual branches skipped together: a dropped sample is exactly the identity
    np.testing.assert_allclose(y[~mask], x.numpy()[~mask])
    kept = y[mask] - x.numpy()[mask]
    assert np.abs(kept).max() > 0
    sd.detach()
    assert isinstance(block.drop_path, TimmStyle)          # restored
    model.eval()
    np.testing.assert_allclose(block(x).numpy(), full, atol=1e-6)


def _capture(model, blocks):
    """Hooks keeping each block's last input and output (registered after StochasticDepth's)."""
    seen, handles = {}, []
    for i, b in enumerate(blocks):
        layer = dict(model.named_sublayers())[b.path]
        handles.append(layer.register_forward_pre_hook(lambda layer, inp, i=i: seen.__setitem__(i, inp[0])))
        handles.append(layer.register_forward_post_hook(lambda layer, inp, out, i=i: seen.__setitem__(-1 - i, out)))
    return seen, handles


@pytest.mark.parametrize("own", [False, True])
def test_masks_drawn_together_and_probe_sums_match_direct_computation(own):
    # the statistics must not change with how cheaply they are recorded: the masks are those of one
    # paddle.rand([batch]) per block in forward order (as when each block drew its own), and the
    # residual-ratio sums kept on the device equal |B(x) - x| / |x| summed over the kept samples
    from compress.model.bundle import ArchSpec, build_model
    from compress.training.statistics import SurvivalStats

    paddle.seed(0)
    shape = (1, 16, 16) if own else (1, 8, 8)
    model = (build_model(ArchSpec("vit_tiny", {"depth": 3, "dim": 16, "heads": 2}), shape, 10) if own
             else TinyCNN())
    blocks = find_blocks(model, shape)
    stats = SurvivalStats(len(blocks))
    sd = StochasticDepth(model, blocks, stats).attach()
    sd.set_rates(np.linspace(0.2, 0.6, len(blocks)))
    seen, handles = _capture(model, blocks)
    model.train()
    expected_sum, expected_n = np.zeros(len(blocks)), np.zeros(len(blocks))
    for step in range(3):
        x = paddle.randn([32, *shape])
        paddle.seed(100 + step)
        model(x)
        masks = sd.step_masks(32)
        paddle.seed(100 + step)
        for i in range(len(blocks)):
            assert np.array_equal(masks[i], paddle.rand([32]).numpy() >= np.float32(sd.rates[i]))
        for i, b in enumerate(blocks):
            xi = seen[i]
            xs = xi.numpy().reshape(32, -1).astype(np.float64)
            if own:   # the block's output, its kept branches scaled back from 1/keep
                delta = (seen[-1 - i].numpy().reshape(32, -1) - xs) * (1 - sd.rates[i])
            else:     # the block itself: forward() bypasses the hooks; batch-norm in training mode, as in the step
                delta = dict(model.named_sublayers())[b.path].forward(xi).numpy().reshape(32, -1) - xs
            ratio = np.linalg.norm(delta, axis=1) / np.linalg.norm(xs, axis=1)
            expected_sum[i] += ratio[masks[i]].sum()
            expected_n[i] += masks[i].sum()
    for h in handles:
        h.remove()
    np.testing.assert_allclose(stats.sums["resid_sum"], expected_sum, rtol=2e-5)
    np.testing.assert_array_equal(stats.sums["resid_n"], expected_n)
    assert 0 < expected_n.sum() < 3 * 32 * len(blocks)
    sd.detach()
