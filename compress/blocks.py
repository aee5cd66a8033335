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



def probe_forward(model, x, handles=()):
    """One forward pass in eval mode without gradients (for hooks to observe); then the hooks
    in ``handles`` are removed and the model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            return model(x)
    finally:
        for h in handles:
            h.remove()
        if was_training:
            model.train()


def _n_params(layer) -> int:
    return int(sum(int(p.numel()) for p in layer.parameters()))


def _candidates(model):
    for name, layer in model.named_sublayers():
        if isinstance(layer, (nn.LayerList, nn.Sequential)):
            for child_name, child in layer.named_children():
                if list(child.children()) and _n_params(child) > 0:
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
    return [Block(i, p, _n_params(cands[p]), find_own_droppath(cands[p])) for i, p in enumerate(innermost)]


def describe_blocks(model=None, arch: str | None = None, arch_kwargs: dict | None = None,
                    input_shape=None, num_classes: int | None = None) -> dict:
    """The ``blocks`` command: removable blocks of a model file or of an architecture."""
    from .errors import CompressError
    from .flops import count_flops, count_params
    from .loading import ArchSpec, build_model, default_input_shape, load_model

    if model is not None:
        bundle = load_model(model, arch=arch, arch_kwargs=arch_kwargs, input_shape=input_shape)
        net, shape, name = bundle.model, bundle.input_shape, bundle.sidecar["arch"]["spec"]
    elif arch is not None:
        shape = tuple(input_shape) if input_shape else (default_input_shape(arch) or (3, 224, 224))
        net, name = build_model(ArchSpec(arch, arch_kwargs or {}), shape, num_classes), arch
    else:
        raise CompressError("give a model file or --arch")
    found = find_blocks(net, shape)
    total, per = count_flops(net, shape, found)
    rows = []
    for b in found:
        d = b.to_json()
        d["flops"] = per[b.path]
        d["flops_share"] = per[b.path] / total if total else 0.0
        rows.append(d)
    return {"arch": name, "input_shape": list(shape), "params": count_params(net), "flops": total, "blocks": rows}
