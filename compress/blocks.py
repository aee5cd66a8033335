"""Finding the removable blocks of any Paddle model.

A block is a composite, parameterised element of a ``LayerList``/``Sequential``
(nested ones included) that maps a tensor to a tensor of the same shape, checked
with a real forward pass. Where such elements nest, the innermost are the blocks
(a ConvNeXt stage's blocks, not the whole stage). Stems, downsampling layers and
heads change shape and are never removable.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import paddle
import paddle.nn as nn

from .droppath import find_own_droppath
from .layers import count_params, probe_forward


@dataclass
class Block:
    index: int
    path: str
    params: int
    own_droppath: list[str] = field(default_factory=list)
    flops: int = 0

    @property
    def droppath(self) -> str:
        return "own" if self.own_droppath else "wrapped"

    def to_json(self) -> dict:
        return {"index": self.index, "path": self.path, "params": self.params,
                "droppath": self.droppath, "own_droppath": self.own_droppath, "flops": self.flops}


def _candidates(model):
    for name, layer in model.named_sublayers():
        if isinstance(layer, (nn.LayerList, nn.Sequential)):
            for child_name, child in layer.named_children():
                if list(child.children()) and count_params(child) > 0:
                    yield f"{name}.{child_name}", child


def find_blocks(model, input_shape) -> list[Block]:
    """Removable blocks in forward order, found by running the model once on a dummy batch."""
    cands = dict(_candidates(model))
    seen = {}
    order = []
    handles = []

    def pre(path):
        def hook(layer, inputs):
            seen.setdefault(path, {"calls": 0})
            info = seen[path]
            info["calls"] += 1
            tensors = [a for a in inputs if isinstance(a, paddle.Tensor)]
            info["in"] = list(tensors[0].shape) if len(tensors) == 1 and len(inputs) == 1 else None
            if path not in order:
                order.append(path)
        return hook

    def post(path):
        def hook(layer, inputs, output):
            seen[path]["out"] = list(output.shape) if isinstance(output, paddle.Tensor) else None
        return hook

    for path, layer in cands.items():
        handles.append(layer.register_forward_pre_hook(pre(path)))
        handles.append(layer.register_forward_post_hook(post(path)))
    probe_forward(model, paddle.randn([2, *input_shape]), handles)
    ok = [p for p in order if seen[p]["calls"] == 1 and seen[p]["in"] is not None and seen[p]["in"] == seen[p].get("out")]
    innermost = [p for p in ok if not any(q != p and q.startswith(p + ".") for q in ok)]
    return [Block(i, p, count_params(cands[p]), find_own_droppath(cands[p])) for i, p in enumerate(innermost)]
