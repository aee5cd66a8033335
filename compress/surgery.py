"""Surgery: physically removing blocks from a model.

A removed block's slot in its ``LayerList``/``Sequential`` is replaced by
``nn.Identity``: its parameters leave the model and the state dict, its ops leave
the exported graph, and the remaining blocks keep their names and indices, so
forward code that indexes its blocks keeps working and weights map 1:1 onto the
parent's.
"""
from __future__ import annotations

import paddle.nn as nn

from .errors import CompressError
from .layers import get_sublayer


def remove_blocks(model, paths: list[str]) -> None:
    """Replace each dotted ``path`` (an element of a container) with ``nn.Identity`` in place."""
    for path in paths:
        parent_path, _, key = path.rpartition(".")
        try:
            parent = get_sublayer(model, parent_path) if parent_path else model
        except (AttributeError, IndexError, KeyError):
            raise CompressError(f"block {path!r} does not exist in this architecture") from None
        if not isinstance(parent, (nn.LayerList, nn.Sequential)) or key not in dict(parent.named_children()):
            raise CompressError(f"block {path!r} is not an element of a LayerList/Sequential")
        if isinstance(parent, nn.LayerList):
            parent[int(key)] = nn.Identity()
        else:  # Sequential keeps its children by name
            parent._sub_layers[key] = nn.Identity()
