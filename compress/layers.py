"""General helpers over any ``paddle.nn.Layer``: probing forward passes, reaching sublayers
by dotted path, counting parameters. Blocks, DropPath, FLOPs, surgery and the criteria
all use these."""
from __future__ import annotations

import paddle
import paddle.nn as nn

_CONTAINERS = (nn.LayerList, nn.Sequential)


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


def get_sublayer(root, dotted: str):
    """The sublayer at a dotted path such as ``stages.1.0`` (digits index a LayerList/Sequential)."""
    layer = root
    for part in dotted.split("."):
        layer = layer[int(part)] if part.isdigit() and isinstance(layer, _CONTAINERS) else getattr(layer, part)
    return layer


def set_sublayer(root, dotted: str, new) -> None:
    """Put ``new`` at a dotted path, in place."""
    parent = root
    *head, last = dotted.split(".")
    for part in head:
        parent = getattr(parent, part) if not part.isdigit() else parent[int(part)]
    if last.isdigit():
        parent[int(last)] = new
    else:
        setattr(parent, last, new)


def count_params(layer) -> int:
    """Parameter elements of ``layer`` (trainable or not)."""
    return int(sum(int(p.numel()) for p in layer.parameters()))
