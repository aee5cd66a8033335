"""The skip-connection rule (compress.graph.residual over compress.graph.tracing): which skips count, nesting,
the surgery check, and that probing leaves nothing patched or changed."""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

from compress.graph.blocks import discover_blocks
from compress.common.errors import CompressError
from compress.graph.residual import check_replacement, outermost_blocks
from compress.graph.surgery import remove_blocks
from compress.graph.tracing import probe_trace
from helpers import paths, reasons
from zoo_models import Attention, Mlp


def discover(model, shape):
    found = discover_blocks(model, shape)
    return found.blocks, found.rejected




@pytest.fixture(autouse=True)
def _seed():
    paddle.seed(0)
    np.random.seed(0)


# --------------------------------------------------------------------------- skip variants
def conv_bn(c):
    return nn.Sequential(nn.Conv2D(c, c, 3, padding=1, bias_attr=False), nn.BatchNorm2D(c))


class Variant(nn.Layer):
    def __init__(self, c, kind):
        super().__init__()
        self.kind = kind
        self.f = conv_bn(c)
        self.h = conv_bn(c)
        self.g = self.create_parameter([1, c, 1, 1], default_initializer=nn.initializer.Constant(1.0))
        self.relu = nn.ReLU()

    def forward(self, x):
        k, f = self.kind, self.f
        if k == "plain":
            return x + f(x)
        if k == "radd":
            return f(x) + x
        if k == "two_x":
            return 2 * x + f(x)
        if k == "x_plus_x":
            return x + x + f(x)
        if k == "gated":
            return x * self.g + f(x)
        if k == "postact_layer":
            out = f(x)
            out += x
            return self.relu(out)
        if k == "postact_functional":
            return F.relu(paddle.add(x=x, y=f(x)))
        if k == "relu6_tail":
            return F.relu6(x + f(x))
        if k == "hardswish_tail":
            return F.hardswish(x + f(x))
        if k == "minus_branch":
            return x - f(x)
        if k == "branch_minus_x":
            return f(x) - x
        if k == "inplace_add":
            y = f(x)
            y.add_(x)
            return y
        if k == "add_n":
            return paddle.add_n([x, f(x), self.h(x)])
        if k == "py_sum":
            return sum([x, f(x)])
        if k == "layer_scale":
            return x + self.g * f(x)
        if k == "alpha":
            return paddle.add(x, f(x), alpha=0.5)
        if k == "chain":             # transformer-style x' = x + f1(x); y = x' + f2(x')
            x = x + f(x)
            return x + self.h(x)
        if k == "preact_out":        # y = relu(x) + f(x): the skip is relu(x)
            return F.relu(x) + f(x)
        raise ValueError(k)


class Net(nn.Layer):
    """stem -> (relu?) -> block -> head; ``relu_stem`` makes the block input non-negative."""

    def __init__(self, kind, relu_stem=True, c=8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2D(3, c, 3, padding=1), nn.BatchNorm2D(c), *([nn.ReLU()] if relu_stem else []))
        self.block = Variant(c, kind)
        self.head = nn.Linear(c, 4)

    def forward(self, x):
        return self.head(self.block(self.stem(x)).mean([2, 3]))


ACCEPTED = {
    "plain": ["Tensor.__add__"], "radd": ["Tensor.__add__"],
    "postact_layer": ["Tensor.__add__", "F.relu"], "postact_functional": ["paddle.add", "F.relu"],
    "relu6_tail": None, "minus_branch": ["Tensor.__sub__"], "inplace_add": ["Tensor.add_"],
    "add_n": ["paddle.add_n"], "py_sum": ["Tensor.__radd__", "Tensor.__add__"], "layer_scale": ["Tensor.__add__"],
    "alpha": ["paddle.add"], "chain": ["Tensor.__add__", "Tensor.__add__"],
}
REJECTED = {
    "two_x": "scaled by 2", "x_plus_x": "scaled by 2", "gated": "multiplied or divided by a parameter",
    "hardswish_tail": "not the identity", "branch_minus_x": "scaled by -1", "preact_out": "not the identity",
}


@pytest.mark.parametrize("kind", sorted(ACCEPTED))
def test_accepted_variants(kind):
    blocks, rejected = discover(Net(kind), (3, 8, 8))
    assert paths(blocks) == ["block"], reasons(rejected).get("block")
    if ACCEPTED[kind] is not None:
        assert blocks[0].skip_ops == ACCEPTED[kind]
    assert blocks[0].branches == (2 if kind in ("add_n", "chain") else 1)


@pytest.mark.parametrize("kind", sorted(REJECTED))
def test_rejected_variants(kind):
    blocks, rejected = discover(Net(kind, relu_stem=False), (3, 8, 8))
    assert blocks == []
    assert REJECTED[kind] in reasons(rejected)["block"]


def test_postact_needs_nonnegative_input():
    """relu(x + f(x)) is removable only when relu(x) == x, as behind a ReLU; a block that
    follows a conv+BN directly (negative inputs) is not."""
    blocks, rejected = discover(Net("postact_layer", relu_stem=False), (3, 8, 8))
    assert blocks == []
    assert "passes through F.relu, which is not the identity" in reasons(rejected)["block"]


# --------------------------------------------------------------------------- nesting
class Residual(nn.Layer):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return x + self.fn(x)


class PreNorm(nn.Layer):
    def __init__(self, dim, fn):
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x):
        return self.fn(self.norm(x))


class MixedBlock(nn.Layer):
    """own attention addition + a Residual(ffn) child on its identity path."""

    def __init__(self, dim):
        super().__init__()
        self.attn = PreNorm(dim, Attention(dim, 2))
        self.ffn = Residual(PreNorm(dim, Mlp(dim, dim)))

    def forward(self, x):
        x = x + self.attn(x)
        return self.ffn(x)


class TokenNet(nn.Layer):
    def __init__(self, kind, dim=16, depth=3):
        super().__init__()
        self.embed = nn.Linear(4, dim)
        if kind == "wrappers":   # lucid-rains style: Sequential(Residual(attn), Residual(ff))
            self.layers = nn.LayerList([nn.Sequential(Residual(PreNorm(dim, Attention(dim, 2))),
                                                      Residual(PreNorm(dim, Mlp(dim, dim)))) for _ in range(depth)])
        else:
            self.layers = nn.LayerList([MixedBlock(dim) for _ in range(depth)])
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        x = self.embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x.mean(1))


def test_residual_wrappers_are_the_units():
    blocks, rejected = discover(TokenNet("wrappers"), (5, 4))
    assert paths(blocks) == [f"layers.{i}.{j}" for i in range(3) for j in range(2)]
    assert reasons(rejected)["layers.0"].startswith("composition of 2 residual blocks")


def test_outer_block_with_own_addition_wins():
    blocks, rejected = discover(TokenNet("mixed"), (5, 4))
    assert paths(blocks) == [f"layers.{i}" for i in range(3)]
    assert "nested inside block layers.0" in reasons(rejected)["layers.0.ffn"]


# --------------------------------------------------------------------------- candidates, surgery, state
class Shared(nn.Layer):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2D(3, 8, 3, padding=1)
        self.block = Residual(conv_bn(8))
        self.other = Residual(conv_bn(8))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = self.stem(x)
        x = self.block(self.block(x))      # the same block twice
        return self.head(self.other(x).mean([2, 3]))


def test_called_twice_is_rejected():
    blocks, rejected = discover(Shared(), (3, 8, 8))
    assert paths(blocks) == ["other"]
    assert "called 2 times" in reasons(rejected)["block"]


class HiddenList(nn.Layer):
    """Blocks also held in a plain Python list that forward uses (ResNeXt/GhostNet-style zoo code)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2D(3, 8, 3, padding=1)
        self.blocks = nn.LayerList([Residual(conv_bn(8)) for _ in range(2)])
        self._plain = list(self.blocks)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = self.stem(x)
        for b in self._plain:
            x = b(x)
        return self.head(x.mean([2, 3]))


class HiddenClosure(nn.Layer):
    """A block reached only through a closure: no attribute holds it, so surgery cannot replace the call."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2D(3, 8, 3, padding=1)
        self.blocks = nn.LayerList([Residual(conv_bn(8)) for _ in range(2)])
        first = self.blocks[0]
        self._run_first = lambda x: first(x)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = self.blocks[1](self._run_first(self.stem(x)))
        return self.head(x.mean([2, 3]))


def test_blocks_held_in_a_plain_list_are_found_and_replaced_there_too():
    model = HiddenList()
    blocks, rejected = discover(model, (3, 8, 8))
    assert paths(blocks) == ["blocks.0", "blocks.1"]
    remove_blocks(model, ["blocks.0"])
    assert model._plain[0] is model.blocks[0] and isinstance(model._plain[0], nn.Identity)


def test_surgery_check_catches_blocks_held_where_it_cannot_reach():
    blocks, rejected = discover(HiddenClosure(), (3, 8, 8))
    assert paths(blocks) == ["blocks.1"]
    assert "surgery check failed: still called after replacement" in reasons(rejected)["blocks.0"]


@pytest.mark.parametrize("factory", ["resnet18", "mobilenet_v2", "mobilenet_v3_small"])
def test_surgery_all_blocks_at_once(factory):
    m = getattr(paddle.vision.models, factory)(pretrained=False)
    m.eval()
    x = paddle.randn([2, 3, 64, 64])
    with paddle.no_grad():
        before = m(x).numpy()
    blocks = outermost_blocks(probe_trace(m, (3, 64, 64)))[0]
    res = check_replacement(m, (3, 64, 64), paths(blocks))
    assert res.ok, res
    assert res.out_shape == [2, 1000]
    with paddle.no_grad():                 # restored: same layers, same output
        after = m(x).numpy()
    np.testing.assert_array_equal(before, after)
    assert not any(isinstance(l, nn.Identity) for _, l in m.named_sublayers())


def test_removed_block_equals_dropped_branch():
    """For a post-activation block behind a ReLU, replacing it by Identity gives exactly what
    the block computes when its branch is zero (BN scale and shift 0): relu(x + 0) == x."""
    net = Net("postact_layer")
    net.eval()
    x = paddle.randn([2, 3, 8, 8])
    with paddle.no_grad():
        res = check_replacement(net, (3, 8, 8), ["block"])
        assert res.ok, res
        removed = net.head(net.stem(x).mean([2, 3]))
        bn = net.block.f[1]
        bn.weight.set_value(paddle.zeros_like(bn.weight))
        bn.bias.set_value(paddle.zeros_like(bn.bias))
        zeroed = net(x)
    np.testing.assert_allclose(removed.numpy(), zeroed.numpy(), rtol=1e-6, atol=1e-6)


class Raising(nn.Layer):
    def __init__(self):
        super().__init__()
        self.block = Residual(conv_bn(3))

    def forward(self, x):
        x = F.relu(self.block(x))
        raise RuntimeError("boom")


def _state():
    import paddle.nn.functional.activation as act
    T = paddle.Tensor
    return ({n: T.__dict__.get(n) for n in ("__add__", "__radd__", "__sub__", "__mul__", "__rmul__", "add", "add_",
                                             "__truediv__", "__neg__", "multiply", "scale")},
            paddle.add, paddle.tensor.add, paddle.tensor.math.add, paddle.add_n, paddle.multiply,
            F.relu, act.relu, F.relu6, F.hardswish, F.dropout, F.gelu)


def test_no_global_state_left_patched_even_if_forward_raises():
    before = _state()
    m = Raising()
    m.train()
    with pytest.raises(CompressError, match="forward pass failed.*RuntimeError: boom"):
        discover(m, (3, 8, 8))
    assert _state() == before
    assert m.training                                   # mode restored
    for _, l in m.named_sublayers(include_self=True):
        assert not l._forward_pre_hooks and not l._forward_post_hooks
    discover(Net("plain"), (3, 8, 8))
    assert _state() == before
    y = paddle.ones([2]) + paddle.ones([2])             # arithmetic still works, untraced
    assert y.numpy().tolist() == [2.0, 2.0]


def test_probe_does_not_change_the_model():
    m = paddle.vision.models.mobilenet_v3_small(pretrained=False)
    m.train()
    state = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    discover(m, (3, 64, 64))
    assert m.training
    for k, v in m.state_dict().items():                 # eval mode: BN running stats untouched
        np.testing.assert_array_equal(state[k], v.numpy())
