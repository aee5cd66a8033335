"""Counting multiply-accumulates (reported as FLOPs, the convention of paddle.flops and fvcore).

Layer hooks count convolutions, linear layers and normalisations; functional
matmuls (attention) and activations (GELU included, which paddle.flops counts as 0)
are counted by wrapping paddle's functional API while one forward pass runs.
Costs are attributed to the innermost enclosing block, which gives each block's
share of the total.
"""
from __future__ import annotations

import contextlib
from math import prod

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .blocks import Block, find_blocks
from ..common.layers import get_sublayer, probe_forward

_ELEMENTWISE = ("relu", "relu6", "gelu", "silu", "swish", "sigmoid", "hardswish", "hardsigmoid", "tanh",
                "leaky_relu", "softmax")
# Paddle 3's norm layers call the C++ ops directly, not paddle.nn.functional: they are counted by layer hooks
_NORMS = (nn.LayerNorm, nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D, nn.BatchNorm, nn.GroupNorm,
          nn.InstanceNorm1D, nn.InstanceNorm2D, nn.InstanceNorm3D)
_COUNTED = (nn.Conv1D, nn.Conv2D, nn.Conv3D, nn.Conv2DTranspose, nn.Linear) + _NORMS


def _numel(t) -> int:
    return int(prod(t.shape))


class _Counter:
    def __init__(self, keys):
        self.total = 0
        self.per_block = {p: 0 for p in keys}
        self.stack: list[str] = []

    def add(self, n: int):
        self.total += int(n)
        for key in set(self.stack):  # every enclosing unit: a branch's FLOPs are also its block's
            self.per_block[key] += int(n)


def _matmul_macs(x, y, transpose_x=False, transpose_y=False):
    xs, ys = list(x.shape), list(y.shape)
    if len(xs) == 1 or len(ys) == 1:
        return max(_numel(x), _numel(y))
    m, k = (xs[-1], xs[-2]) if transpose_x else (xs[-2], xs[-1])
    n = ys[-2] if transpose_y else ys[-1]
    batch = prod(xs[:-2]) if len(xs) >= len(ys) else prod(ys[:-2])
    return int(batch * m * k * n)


@contextlib.contextmanager
def _patched(counter: _Counter):
    saved = {}

    def wrap_mm(fn):
        def inner(x, y, transpose_x=False, transpose_y=False, name=None):
            counter.add(_matmul_macs(x, y, transpose_x, transpose_y))
            return fn(x, y, transpose_x, transpose_y, name)
        return inner

    def wrap_elem(fn, factor):
        def inner(x, *a, **k):
            counter.add(factor * _numel(x))
            return fn(x, *a, **k)
        return inner

    targets = [(paddle, "matmul", wrap_mm(paddle.matmul)), (paddle, "bmm", None)]
    saved[(paddle, "matmul")] = paddle.matmul
    paddle.matmul = targets[0][2]
    for name in _ELEMENTWISE:
        fn = getattr(F, name, None)
        if fn is not None:
            saved[(F, name)] = fn
            setattr(F, name, wrap_elem(fn, 1))
    orig_mm = paddle.Tensor.__matmul__
    saved[(paddle.Tensor, "__matmul__")] = orig_mm

    def tensor_mm(a, b):
        counter.add(_matmul_macs(a, b))
        return orig_mm(a, b)
    paddle.Tensor.__matmul__ = tensor_mm
    try:
        yield
    finally:
        for (obj, name), fn in saved.items():
            setattr(obj, name, fn)


def count_flops(model, input_shape, blocks=(), regions: dict[str, list[str]] | None = None) -> tuple[int, dict[str, int]]:
    """(total MACs for one sample, MACs per block path and per key of ``regions``).

    ``regions``: key -> sublayer paths whose calls count towards it (a branch: its body's layers); a cost
    counts towards every block and region it runs in."""
    regions = regions or {}
    counter = _Counter([b.path for b in blocks] + list(regions))
    handles = []

    def leaf_hook(layer, inputs, output):
        if isinstance(layer, (nn.Conv1D, nn.Conv2D, nn.Conv3D, nn.Conv2DTranspose)):
            w = layer.weight
            per_out = prod(w.shape[1:]) if not isinstance(layer, nn.Conv2DTranspose) else prod(w.shape[:1] + w.shape[2:])
            counter.add(_numel(output) * per_out)
        elif isinstance(layer, nn.Linear):
            counter.add(_numel(output) * layer.weight.shape[0])
        elif isinstance(layer, _NORMS):
            counter.add(2 * _numel(output))  # normalise + affine, per element

    for layer in model.sublayers(include_self=True):
        if isinstance(layer, _COUNTED):
            handles.append(layer.register_forward_post_hook(leaf_hook))
    spans = [(b.path, b.path) for b in blocks] + [(p, key) for key, paths in regions.items() for p in paths]
    for path, key in spans:
        layer = get_sublayer(model, path)
        handles.append(layer.register_forward_pre_hook(lambda l, i, k=key: counter.stack.append(k)))
        handles.append(layer.register_forward_post_hook(lambda l, i, o: counter.stack.pop() and None))
    with _patched(counter):
        probe_forward(model, paddle.zeros([1, *input_shape]), handles)
    return counter.total, counter.per_block


def blocks_with_flops(model, input_shape, pattern: str | None = None) -> tuple[list[Block], int]:
    """The model's removable blocks (``pattern``: see :func:`compress.graph.blocks.discover_blocks`), each with its
    FLOPs filled in, and the model's total FLOPs."""
    blocks = find_blocks(model, input_shape, pattern)
    total, per_block = count_flops(model, input_shape, blocks)
    for b in blocks:
        b.flops = per_block[b.path]
    return blocks, total
