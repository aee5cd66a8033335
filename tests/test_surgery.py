import numpy as np
import paddle

from compress.blocks import find_blocks
from compress.flops import count_flops
from compress.layers import count_params
from compress.surgery import remove_blocks
from tiny_models import TinyCNN, TinyTransformer


def test_removed_blocks_are_gone_not_masked():
    model = TinyCNN()
    model.eval()
    before_params, (before_flops, per) = count_params(model), count_flops(model, (1, 8, 8), find_blocks(model, (1, 8, 8)))
    blocks = find_blocks(model, (1, 8, 8))
    remove_blocks(model, ["stages.0.1", "stages.1.2"])
    assert isinstance(model.stages[0][1], paddle.nn.Identity)
    assert not any(k.startswith("stages.0.1.") or k.startswith("stages.1.2.") for k in model.state_dict())
    assert count_params(model) == before_params - blocks[1].params - blocks[3].params
    after_flops, _ = count_flops(model, (1, 8, 8))
    assert after_flops == before_flops - per["stages.0.1"] - per["stages.1.2"]
    assert [b.path for b in find_blocks(model, (1, 8, 8))] == ["stages.0.0", "stages.1.1"]


def test_removal_equals_skipping_the_block():
    model = TinyTransformer()
    model.eval()
    x = paddle.randn([3, 1, 8, 8])
    with paddle.no_grad():
        h = model.embed(x).flatten(2).transpose([0, 2, 1])
        for name, b in [("0.0", model.groups[0][0]), ("1.0", model.groups[1][0]), ("1.1", model.groups[1][1])]:
            h = b(h)
        expected = model.head(h.mean(axis=1)).numpy()
    remove_blocks(model, ["groups.0.1"])
    np.testing.assert_allclose(model(x).numpy(), expected, atol=1e-5)
