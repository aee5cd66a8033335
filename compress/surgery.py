"""Surgery: physically removing blocks from a model.

A removed block is replaced by ``nn.Identity`` in its parent's sublayers, which is where
``Sequential``, ``LayerList`` and attribute access (``self.block``) all find it: its
parameters leave the model and the state dict, its ops leave the exported graph, and the
remaining blocks keep their names and indices, so forward code that indexes its blocks
keeps working and weights map 1:1 onto the parent's.

:func:`replaced_by_identity` does the same for the length of a ``with`` block and puts
the original layers back: block discovery uses it to check that removing its blocks
really takes them out of the forward pass.
"""
from __future__ import annotations

import contextlib

import paddle.nn as nn

from .errors import CompressError
from .layers import get_sublayer


def _parent_of(model, path: str):
    """(parent layer, child name) of the sublayer at ``path``; refuses a path that is not a sublayer."""
    parent_path, _, key = path.rpartition(".")
    try:
        parent = get_sublayer(model, parent_path) if parent_path else model
    except (AttributeError, IndexError, KeyError, ValueError):
        raise CompressError(f"block {path!r} does not exist in this architecture") from None
    if not isinstance(parent, nn.Layer) or not isinstance(parent._sub_layers.get(key), nn.Layer):
        raise CompressError(f"block {path!r} is not a sublayer of this architecture")
    return parent, key


def remove_blocks(model, paths: list[str]) -> None:
    """Replace the sublayer at each dotted ``path`` with ``nn.Identity``, in place."""
    for path in paths:
        parent, key = _parent_of(model, path)
        parent._sub_layers[key] = nn.Identity()


@contextlib.contextmanager
def replaced_by_identity(model, paths: list[str]):
    """Within the ``with`` block, the sublayers at ``paths`` are ``nn.Identity``; then they are put back.

    Yields {path: original layer}.
    """
    saved = []
    try:
        for path in paths:
            parent, key = _parent_of(model, path)
            saved.append((parent, key, parent._sub_layers[key]))
            parent._sub_layers[key] = nn.Identity()
        yield {f"{p}": layer for p, (_, _, layer) in zip(paths, saved)}
    finally:
        for parent, key, layer in reversed(saved):
            parent._sub_layers[key] = layer
