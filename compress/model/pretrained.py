"""Fine-tuning from a foreign checkpoint: a plain state dict without a sidecar (``.pdparams`` or
``.safetensors``), perhaps trained for another number of classes.

The model is built for the data's classes, then the checkpoint is loaded into it strictly, with one
exception: the **classifier** — the layer whose output is the logits — keeps its fresh
initialisation when the checkpoint's tensors for it differ in the class dimension only. The
classifier is found by probing the model, not by its name: one forward pass of a dummy batch with a
hook on every leaf layer; it is the last ``Linear``/``Conv`` layer called, provided its output width
is the number of classes. Every other missing, unexpected or mis-shaped key is refused with the list.

A checkpoint saved from a wrapper (every key under one prefix such as ``model.`` or ``module.``,
which the model does not have) is read with that prefix taken off.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paddle
import paddle.nn as nn

from ..common.errors import CompressError
from ..common.layers import get_sublayer, probe_forward
from .storage import read_model_files
from .weights import apply_weights, check_weights_path, mismatch_message, weight_mismatches

_CLASSIFIER_TYPES = (nn.Linear, nn.Conv1D, nn.Conv2D, nn.Conv3D)


@dataclass
class Pretrained:
    """A foreign checkpoint as read: its weights, where it came from and its sha256."""

    path: Path
    state: dict[str, np.ndarray]
    sha256: str
    stripped_prefix: str | None = None
    reinitialized: list[str] = field(default_factory=list)

    def record(self) -> dict:
        """What the sidecar keeps of it (``pretrained``)."""
        out = {"path": str(self.path), "sha256": self.sha256, "reinitialized": list(self.reinitialized)}
        if self.stripped_prefix:
            out["stripped_prefix"] = self.stripped_prefix
        return out


def read_pretrained(path: str | os.PathLike) -> Pretrained:
    """The weights of a foreign checkpoint, read without running code (see :mod:`compress.model.weights`)."""
    path = check_weights_path(path)
    if not path.is_file():
        raise CompressError(f"{path}: no such file")
    files = read_model_files(path, sidecar_required=False)
    return Pretrained(Path(path).resolve(), files.state, files.sha256)


def find_classifier(model, input_shape, num_classes: int) -> str | None:
    """The path of the layer whose output is the logits, or None if no such layer is seen.

    One forward pass of a dummy batch in eval mode, a hook on every leaf layer: the classifier is
    the last ``Linear``/``Conv`` layer called, if its output width (last axis of a ``Linear``'s
    output, channel axis of a convolution's) is ``num_classes``.
    """
    called: list[tuple[str, int]] = []

    def hook_for(path, layer):
        axis = -1 if isinstance(layer, nn.Linear) else 1

        def hook(_layer, _inputs, output):
            called.append((path, int(output.shape[axis])))
        return hook

    handles = [layer.register_forward_post_hook(hook_for(path, layer))
               for path, layer in model.named_sublayers() if isinstance(layer, _CLASSIFIER_TYPES)]
    probe_forward(model, paddle.zeros([2, *input_shape], dtype="float32"), handles)
    if not called or called[-1][1] != num_classes:
        return None
    return called[-1][0]


def _strip_prefix(state: dict, own: dict) -> tuple[dict, str | None]:
    """``state`` with a wrapper's prefix taken off its keys, if every key has the same one and the model
    has no key under it; else ``state`` as it is."""
    if not state or any(k in own for k in state):
        return state, None
    heads = {k.split(".", 1)[0] for k in state}
    if len(heads) != 1 or any("." not in k for k in state):
        return state, None
    prefix = f"{heads.pop()}."
    if any(k.startswith(prefix) for k in own):
        return state, None
    stripped = {k[len(prefix):]: v for k, v in state.items()}
    return (stripped, prefix) if any(k in own for k in stripped) else (state, None)


def _class_axis_only(a, b) -> bool:
    """Shapes that differ in exactly one axis."""
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1


def load_pretrained(model, pre: Pretrained, input_shape, num_classes: int) -> list[str]:
    """Load a foreign checkpoint into ``model`` (built for ``num_classes``); return the keys re-initialised.

    Only the classifier's own parameters may differ from the checkpoint, and only in one axis (the
    classes): those keep the model's fresh values and are named in ``pre.reinitialized``. Anything
    else that does not match is refused with one line listing the keys.
    """
    own = model.state_dict()
    state, pre.stripped_prefix = _strip_prefix(pre.state, own)
    missing, unexpected, shaped = weight_mismatches(own, state)
    reinit = []
    if shaped and not missing and not unexpected:
        head = find_classifier(model, input_shape, num_classes)
        params = {f"{head}.{n}" for n, _ in get_sublayer(model, head).named_parameters()} if head else set()
        reinit = [k for k in shaped if k in params and _class_axis_only(state[k].shape, own[k].shape)]
    rest = [k for k in shaped if k not in reinit]
    if missing or unexpected or rest:
        msg = mismatch_message(own, state, str(pre.path), missing, unexpected, rest)
        raise CompressError(f"{msg} (from a pretrained checkpoint only the classifier, the layer giving the logits, "
                            "may differ, in its number of classes)")
    apply_weights(model, state, str(pre.path), keep_own=frozenset(reinit))
    pre.reinitialized = reinit
    return reinit
