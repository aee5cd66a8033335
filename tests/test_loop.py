import numpy as np
import paddle

from compress.graph.blocks import find_blocks
from compress.training.config import FitConfig
from compress.training.loop import DepthRun, train_step
from compress.training.optimizer import make_optimizer
from tiny_models import TinyCNN


def _run(as_tensors: bool):
    paddle.seed(0)
    model = TinyCNN()
    blocks = find_blocks(model, (1, 8, 8))
    cfg = FitConfig(epochs=0, drop_path_rate=0.3, seed=0)
    opt, _ = make_optimizer(model, cfg, 1)
    depth = DepthRun(model, blocks, cfg)
    depth.start_epoch(0, 1)
    model.train()
    rng = np.random.default_rng(0)
    out = []
    for _ in range(3):
        xb, yb = rng.standard_normal((16, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 16)
        if as_tensors:  # as a DataLoader hands them over
            xb, yb = paddle.to_tensor(xb), paddle.to_tensor(yb)
        loss, per_sample = train_step(model, opt, xb, yb, cfg, 1 / 16)
        depth.record(16, per_sample)
        out.append((float(loss), per_sample.copy()))
    depth.detach()
    return out, depth.stats.sums, model.state_dict()


def test_train_step_takes_arrays_or_tensors_and_returns_host_losses():
    a, sums_a, state_a = _run(False)
    b, sums_b, state_b = _run(True)
    for (la, pa), (lb, pb) in zip(a, b):
        assert isinstance(pa, np.ndarray) and pa.shape == (16,)
        assert la == lb and np.array_equal(pa, pb)
        assert abs(la - float(pa.sum()) / 16) < 1e-5       # the loss is the mean of the per-sample losses
    for k in sums_a:
        np.testing.assert_array_equal(sums_a[k], sums_b[k])
    assert sums_a["resid_n"].sum() > 0 and sums_a["seen"][0] == 48
    for k in state_a:
        np.testing.assert_array_equal(state_a[k].numpy(), state_b[k].numpy())
