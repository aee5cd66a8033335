import paddle
import paddle.nn as nn

from compress.graph.blocks import find_blocks
from compress.graph.flops import count_flops
from compress.common.layers import count_params
from tiny_models import TinyCNN


def test_conv_and_linear_match_paddle_flops():
    model = nn.Sequential(nn.Conv2D(3, 8, 3, padding=1, bias_attr=False), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 10, bias_attr=False))
    ours, _ = count_flops(model, (3, 6, 6))
    assert ours == paddle.flops(model, [1, 3, 6, 6], print_detail=False) == 8 * 36 * 27 + 288 * 10


def test_close_to_paddle_flops_on_the_shipped_resnet():
    from compress.model.bundle import ArchSpec, build_model

    model = build_model(ArchSpec("resnet_tiny"), (1, 16, 16), 10)
    ours, _ = count_flops(model, (1, 16, 16))
    theirs = paddle.flops(model, [1, 1, 16, 16], print_detail=False)
    assert abs(ours - theirs) / theirs < 0.01    # they differ only in how norms/activations are counted


def test_gelu_and_functional_matmul_are_counted():
    class Attn(nn.Layer):
        def __init__(self):
            super().__init__()
            self.act = nn.GELU()

        def forward(self, x):                     # x: [1, 4, 8]
            return self.act(paddle.matmul(x, x, transpose_y=True))

    total, _ = count_flops(Attn(), (4, 8))
    assert total == 4 * 8 * 4 + 4 * 4             # the matmul's MACs + one per GELU output
    assert paddle.flops(Attn(), [1, 4, 8], print_detail=False) == 0


def test_per_block_attribution_sums_to_the_blocks():
    model = TinyCNN()
    blocks = find_blocks(model, (1, 8, 8))
    total, per = count_flops(model, (1, 8, 8), blocks)
    assert set(per) == {b.path for b in blocks} and all(v > 0 for v in per.values())
    assert sum(per.values()) < total
    assert count_params(model) == sum(int(p.numel()) for p in model.parameters())
