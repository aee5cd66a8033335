"""DropPath (stochastic depth) on whole residual blocks, for any model.

``DropPath`` is the usual per-sample layer. ``StochasticDepth`` drives every
removable block of a model through forward hooks, so the model's code and its
parameter names stay untouched:

* wrapped blocks: ``y = x + mask * (B(x) - x) / keep`` (post-hook);
* blocks with their own DropPath layer(s): those layers are swapped for a
  ``DropPath`` that applies the block's mask, drawn once per forward, so a
  dropped block is exactly the identity, as after removal.

It reports each step's masks and residual ratios to a ``SurvivalStats``.
"""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn

from .layers import get_sublayer, set_sublayer


def _bcast(mask, x):
    return mask.reshape([x.shape[0]] + [1] * (x.ndim - 1)).astype(x.dtype)


class DropPath(nn.Layer):
    """Per-sample stochastic depth: zero the branch with probability ``rate``, scale survivors by 1/keep.

    With a ``controller`` (set by ``StochasticDepth``) the mask is the block's,
    shared by all its branches.
    """

    def __init__(self, rate: float = 0.0, scale_by_keep: bool = True):
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.scale_by_keep = scale_by_keep
        self._controller = None  # (StochasticDepth, block index)

    def forward(self, x):
        if self._controller is not None:
            sd, i = self._controller
            mask, keep = sd._mask[i], 1.0 - float(sd.rates[i])
        else:
            if not self.training or self.rate == 0.0:
                return x
            keep = 1.0 - self.rate
            mask = (paddle.rand([x.shape[0]]) < keep)
        if mask is None:
            return x
        out = x * _bcast(mask, x)
        return out / keep if self.scale_by_keep else out


def find_own_droppath(block) -> list[str]:
    """Names of the block's own stochastic-depth layers (any class named like DropPath)."""
    return [name for name, layer in block.named_sublayers()
            if "droppath" in type(layer).__name__.lower().replace("_", "")]


class StochasticDepth:
    """Attach block-level DropPath to ``blocks`` of ``model``; ``rates`` is set per epoch by a schedule."""

    def __init__(self, model, blocks, stats=None, residual_ratio: bool = True):
        self.model = model
        self.blocks = blocks
        self.stats = stats
        self.residual_ratio = residual_ratio
        self.rates = np.zeros(len(blocks))
        self._mask = [None] * len(blocks)
        self._input = [None] * len(blocks)
        self._handles = []
        self._swapped = []  # (block layer, name, original layer)

    # -- lifecycle
    def attach(self):
        for i, b in enumerate(self.blocks):
            layer = get_sublayer(self.model, b.path)
            self._handles.append(layer.register_forward_pre_hook(self._pre_hook(i)))
            self._handles.append(layer.register_forward_post_hook(self._post_hook(i, own=bool(b.own_droppath))))
            for name in b.own_droppath:
                original = get_sublayer(layer, name)
                dp = DropPath()
                dp._controller = (self, i)
                set_sublayer(layer, name, dp)
                self._swapped.append((layer, name, original))
        return self

    def detach(self):
        for h in self._handles:
            h.remove()
        for layer, name, original in self._swapped:
            set_sublayer(layer, name, original)
        self._handles, self._swapped = [], []

    def __enter__(self):
        return self.attach()

    def __exit__(self, *exc):
        self.detach()

    # -- hooks
    def _pre_hook(self, i):
        def hook(layer, inputs):
            x = inputs[0]
            self._input[i] = x
            rate = float(self.rates[i])
            if layer.training and rate > 0.0:
                self._mask[i] = paddle.rand([x.shape[0]]) >= rate
            else:
                self._mask[i] = None
        return hook

    def _post_hook(self, i, own: bool):
        def hook(layer, inputs, output):
            x, mask = self._input[i], self._mask[i]
            self._input[i] = None
            if not layer.training:
                return None
            keep = 1.0 - float(self.rates[i])
            if self.stats is not None and self.residual_ratio:
                with paddle.no_grad():
                    delta = (output - x).flatten(1)
                    if own and mask is not None:
                        delta = delta * keep  # undo the 1/keep scaling inside the block
                    ratio = paddle.linalg.norm(delta, axis=1) / (paddle.linalg.norm(x.flatten(1), axis=1) + 1e-12)
                    ratio = ratio.numpy()
                    self.stats.add_residual(i, ratio if mask is None else ratio[mask.numpy()])
            if own or mask is None:
                return None
            return x + _bcast(mask, x) * (output - x) / keep
        return hook

    def step_masks(self, batch: int) -> np.ndarray:
        """(blocks, batch) booleans: which samples went through which block in the last forward."""
        out = np.ones((len(self.blocks), batch), dtype=bool)
        for i, m in enumerate(self._mask):
            if m is not None:
                out[i] = m.numpy()
        return out
