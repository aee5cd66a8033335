"""Distillation from a teacher while healing: its logits (KL) and, optionally, its final hidden state (MSE)."""
from __future__ import annotations

import paddle.nn.functional as F

from ..common.errors import CompressError
from ..common.layers import get_sublayer
from ..model.pretrained import find_classifier


def distillation_loss(logits, teacher_logits, temperature: float, scale: float = 1.0):
    """Knowledge distillation: KL(teacher || student) on temperature-scaled logits, summed over
    the batch, times ``scale`` and T^2 (which keeps its gradients comparable across temperatures)."""
    return F.kl_div(F.log_softmax(logits / temperature, axis=-1), F.softmax(teacher_logits / temperature, axis=-1),
                    reduction="sum") * scale * temperature * temperature


def hidden_loss(hidden, teacher_hidden, scale: float = 1.0):
    """Hidden-state distillation: per sample, the mean squared difference between the student's and the
    teacher's final hidden state (the classifier's input), relative to the teacher's mean square over the
    batch (so its size does not depend on the features' scale); summed over the batch, times ``scale``."""
    s, t = hidden.reshape([hidden.shape[0], -1]), teacher_hidden.reshape([teacher_hidden.shape[0], -1])
    return ((s - t) ** 2).mean(axis=1).sum() * scale / ((t ** 2).mean() + 1e-12)


class HiddenTap:
    """Captures the input of a model's classifier (its final hidden state) on every forward pass."""

    def __init__(self, model, path: str):
        self.value = None
        self.handle = get_sublayer(model, path).register_forward_pre_hook(self._hook)

    def _hook(self, _layer, inputs):
        self.value = inputs[0]

    def remove(self) -> None:
        self.handle.remove()


def hidden_taps(model, teacher, input_shape, num_classes: int) -> tuple[HiddenTap, HiddenTap]:
    """(student tap, teacher tap) on the classifier each model has (found by probing, see
    :func:`compress.model.pretrained.find_classifier`); refused when either has none."""
    paths = [find_classifier(m, input_shape, num_classes) for m in (model, teacher)]
    if None in paths:
        raise CompressError("hidden-state distillation needs a classifier layer (a Linear or Conv giving the "
                            "logits) in the student and the teacher; none was found: distil the logits only",
                            param="hidden_weight")
    return HiddenTap(model, paths[0]), HiddenTap(teacher, paths[1])
