"""DropPath (stochastic depth) on whole residual blocks, for any model.

``DropPath`` is the usual per-sample layer. ``StochasticDepth`` drives every
removable block of a model through forward hooks, so the model's code and its
parameter names stay untouched:

* wrapped blocks: ``y = x + mask * (B(x) - x) / keep`` (post-hook);
* blocks with their own DropPath layer(s): those layers are swapped for a
  ``DropPath`` that applies the block's mask, drawn once per forward, so a
  dropped block is exactly the identity, as after removal;
* branches (``granularity`` branch, :mod:`compress.graph.branches`): the units are a block's DropPath
  calls, and the k-th call of the block's forward applies branch k's own mask (and feeds its
  residual ratio: the branch's output against the input of its body).

It reports each step's masks and residual ratios to a ``SurvivalStats`` (the ratios summed on the
device, copied to the host when the statistics are read).
"""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn

from ..common.layers import get_sublayer, set_sublayer


def _bcast(mask, x):
    mask = mask.reshape([x.shape[0]] + [1] * (x.ndim - 1))
    return mask if mask.dtype == x.dtype else mask.astype(x.dtype)


class DropPath(nn.Layer):
    """Per-sample stochastic depth: zero the branch with probability ``rate``, scale survivors by 1/keep.

    With a ``controller`` (set by ``StochasticDepth``) the mask is the block's, shared by all its
    branches, or under branch granularity the k-th call's branch's own.
    """

    def __init__(self, rate: float = 0.0, scale_by_keep: bool = True):
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.scale_by_keep = scale_by_keep
        self._controller = None  # (StochasticDepth, block group index)

    def forward(self, x):
        if self._controller is not None:
            sd, g = self._controller
            mask, keep = sd._call_mask(g, x, self.training)
        else:
            if not self.training or self.rate == 0.0:
                return x
            keep = 1.0 - self.rate
            mask = (paddle.rand([x.shape[0]]) < keep)
        if mask is None:
            return x
        out = x * _bcast(mask, x)
        return out / keep if self.scale_by_keep else out


class _Group:
    """The units of one block: ``units`` (indices), the block's own DropPath layers, and for branches
    ``by_call``: DropPath call number -> unit index."""

    def __init__(self, path: str):
        self.path, self.units, self.droppath, self.by_call = path, [], [], {}


def _groups(units) -> list[_Group]:
    """Units (blocks, or compress.graph.branches.Branch objects with ``block_path`` and ``call``) grouped by block,
    in order."""
    groups: dict[str, _Group] = {}
    for i, u in enumerate(units):
        call = getattr(u, "call", None)
        path = u.block_path if call is not None else u.path
        g = groups.setdefault(path, _Group(path))
        g.units.append(i)
        if call is not None:
            g.by_call[call] = i
            g.droppath = list(u.block_droppath)
        else:
            g.droppath = list(u.own_droppath)
    return list(groups.values())


class StochasticDepth:
    """Attach block-level DropPath to ``blocks`` of ``model``; ``rates`` is set per epoch by a schedule.

    Cheap per step (the statistics must cost little next to the step itself): at the first block of
    each training forward, the masks of all blocks are drawn in one ``paddle.rand`` (the same numbers,
    in the same order, as one draw per block), copied to the host once, and handed to the blocks as one
    tensor; the residual-ratio probe keeps two norms per block and reduces them once per step on the
    device; the per-step sums reach the host only when the statistics are read (:meth:`flush`).
    """

    def __init__(self, model, blocks, stats=None, residual_ratio: bool = True):
        self.model = model
        self.blocks = blocks
        self.stats = stats
        self.residual_ratio = residual_ratio
        self.rates = np.zeros(len(blocks))
        self._mask = [None] * len(blocks)       # per block: float32 mask tensor (batch,), or None
        self._host = [None] * len(blocks)       # the same on the host, bool (batch,), or None
        self._full = [None] * len(blocks)       # the masks of the whole global batch (data parallel), or None
        # data parallel: (global batch size, start, size) of this rank's part in the next step; the masks
        # are drawn for the global batch (the same generator on every rank) and this part kept
        self.global_batch: tuple[int, int, int] | None = None
        self.reduce = None                      # data parallel: adds an array over all ranks
        self._input = [None] * len(blocks)
        self._forward = 0                       # counts the model's forward passes
        self._drawn = -1                        # the forward whose masks were drawn together
        self._used = [-1] * len(blocks)         # the forward in which each block last took its mask
        self._probe = {}                        # block -> (|B(x)-x|², |x|², weights, count) of the last forward
        self._resid = []                        # per step: device (n probed,) ratio sums, block indices, counts
        self._handles = []
        self._swapped = []  # (block layer, name, original layer)
        # the units grouped by their block: a whole block is a group of one; a block's branches share one group,
        # whose k-th DropPath call in a forward is the branch (unit) with call k
        self._groups = _groups(blocks)
        self._calls = [0] * len(self._groups)     # per group: DropPath calls so far in the block's forward
        self._branch_in = {}                       # branch unit -> the input of its body (the residual stream)

    # -- lifecycle
    def attach(self):
        self._handles.append(self.model.register_forward_pre_hook(self._model_pre_hook))
        for g, group in enumerate(self._groups):
            layer = get_sublayer(self.model, group.path)
            self._handles.append(layer.register_forward_pre_hook(self._pre_hook(g)))
            self._handles.append(layer.register_forward_post_hook(self._post_hook(g, own=bool(group.droppath))))
            for name in group.droppath:
                original = get_sublayer(layer, name)
                dp = DropPath()
                dp._controller = (self, g)
                set_sublayer(layer, name, dp)
                self._swapped.append((layer, name, original))
            for i in group.by_call.values():  # a branch's residual stream: the input of its body's first layer
                first = get_sublayer(layer, self.blocks[i].body[0])
                self._handles.append(first.register_forward_pre_hook(
                    lambda _l, inputs, i=i: self._branch_in.__setitem__(i, inputs[0]) and None))
        if self.stats is not None:
            self.stats.defer(self.flush)
        return self

    def detach(self):
        for h in self._handles:
            h.remove()
        for layer, name, original in self._swapped:
            set_sublayer(layer, name, original)
        self._handles, self._swapped = [], []
        if self.stats is not None:
            self.flush()
            self.stats.undefer(self.flush)

    def __enter__(self):
        return self.attach()

    def __exit__(self, *exc):
        self.detach()

    # -- masks
    def _draw(self, blocks: list[int], batch: int) -> None:
        """Masks of ``blocks`` (rates > 0) in one draw: row k is what ``paddle.rand([batch])`` would
        have given the k-th block on its own (same generator, same order)."""
        rates = np.float32(self.rates[blocks])[:, None]  # compared in float32, as paddle compares
        size, start, local = self.global_batch if self.global_batch is not None else (batch, 0, batch)
        if local != batch:  # not this rank's part of the step's batch (a forward outside the step)
            size, start = batch, 0
        full = paddle.rand([len(blocks), size]).numpy() >= rates
        host = full[:, start:start + batch]
        rows = paddle.unbind(paddle.to_tensor(host.astype(np.float32)))
        for k, i in enumerate(blocks):
            self._host[i], self._full[i], self._mask[i] = host[k], full[k], rows[k]

    def _take_mask(self, i: int, layer, batch: int) -> None:
        if not layer.training or float(self.rates[i]) <= 0.0:
            self._host[i] = self._full[i] = self._mask[i] = None
            return
        if self._used[i] == self._forward:
            self._draw([i], batch)  # called again in the same forward (or outside the model's)
        elif self._drawn != self._forward:
            # the first block of this forward: draw every block's mask at once
            self._draw([j for j in range(len(self.blocks)) if float(self.rates[j]) > 0.0], batch)
            self._drawn = self._forward
        self._used[i] = self._forward

    # -- hooks
    def _model_pre_hook(self, layer, inputs):
        self._forward += 1
        self._reduce_probe()

    def _pre_hook(self, g):
        units = self._groups[g].units

        def hook(layer, inputs):
            x = inputs[0]
            self._calls[g] = 0
            for i in units:
                self._input[i] = x
                self._take_mask(i, layer, x.shape[0])
        return hook

    def _call_mask(self, g: int, x, training: bool):
        """(mask or None, keep) for a DropPath call of group ``g``; a branch's call also feeds its probe."""
        group = self._groups[g]
        if not group.by_call:
            i = group.units[0]
            return self._mask[i], 1.0 - float(self.rates[i])
        k, self._calls[g] = self._calls[g], self._calls[g] + 1
        i = group.by_call.get(k)
        if i is None:  # a removed branch's call (its body gives zeros)
            return None, 1.0
        keep = 1.0 - float(self.rates[i])
        x_in = self._branch_in.pop(i, None)
        if training and self.stats is not None and self.residual_ratio and x_in is not None:
            self._record_probe(i, x_in, None, x, False, keep)
        return self._mask[i], keep

    def _post_hook(self, g, own: bool):
        group = self._groups[g]
        if group.by_call:  # branches: their DropPath calls did the work
            def clear(layer, inputs, output):
                for i in group.units:
                    self._input[i] = None
            return clear
        i = group.units[0]

        def hook(layer, inputs, output):
            x, mask = self._input[i], self._mask[i]
            self._input[i] = None
            if not layer.training:
                return None
            keep = 1.0 - float(self.rates[i])
            gate = not own and mask is not None
            delta = output - x if gate else None
            if self.stats is not None and self.residual_ratio:
                self._record_probe(i, x, output, delta, own and mask is not None, keep)
            return x + _bcast(mask, x) * delta / keep if gate else None
        return hook

    # -- residual-ratio probe: |B(x) - x| / |x| per sample, summed over the samples that went through
    def _record_probe(self, i: int, x, output, delta, scaled: bool, keep: float) -> None:
        if i in self._probe:
            self._reduce_probe()
        with paddle.no_grad():  # squared norms: paddle's CPU p_norm is ~3x slower than square + sum
            dn = paddle.square((output - x if delta is None else delta).flatten(1)).sum(axis=1)
            xn = paddle.square(x.flatten(1)).sum(axis=1)
        host = self._host[i]
        weight = np.ones(x.shape[0], np.float32) if host is None else host.astype(np.float32)
        count = x.shape[0] if host is None else int(host.sum())
        # an own DropPath scaled the kept branches by 1/keep inside the block: undo it
        self._probe[i] = (dn, xn, weight * np.float32(keep) if scaled else weight, count)

    def _reduce_probe(self) -> None:
        """The last forward's probe, reduced to one sum per block on the device (a few ops per step)."""
        if not self._probe:
            return
        idx = sorted(self._probe)
        parts = [self._probe[i] for i in idx]
        self._probe = {}
        with paddle.no_grad():
            dn, xn = paddle.stack([p[0] for p in parts]).sqrt(), paddle.stack([p[1] for p in parts]).sqrt()
            w = paddle.to_tensor(np.stack([p[2] for p in parts]))
            sums = (dn * w / (xn + 1e-12)).sum(axis=1)
        counts = np.array([p[3] for p in parts], np.float64)
        self._resid.append((sums, idx, counts))
        if len(self._resid) >= 1024:  # bounded: an epoch-long run of steps without a read still syncs now and then
            self.flush()

    def flush(self) -> None:
        """Add the residual-ratio sums kept on the device to the statistics: one host copy."""
        self._reduce_probe()
        if not self._resid or self.stats is None:
            self._resid = []
            return
        steps, self._resid = self._resid, []
        values = paddle.concat([s for s, _, _ in steps]).numpy().astype(np.float64)
        blocks = np.concatenate([idx for _, idx, _ in steps])
        counts = np.concatenate([c for _, _, c in steps])
        if self.reduce is not None:  # data parallel: every rank's samples
            both = self.reduce(np.concatenate([values, counts]))
            values, counts = both[:len(values)], both[len(values):]
        self.stats.add_residual_sums(blocks, values, counts)

    def step_masks(self, batch: int) -> np.ndarray:
        """(blocks, batch) booleans: which samples went through which block in the last forward."""
        out = np.ones((len(self.blocks), batch), dtype=bool)
        for i, m in enumerate(self._host):
            if m is not None:
                out[i] = m
        return out

    def global_masks(self, size: int) -> np.ndarray:
        """(blocks, size) booleans for the whole global batch of the last forward (data parallel; in one
        process the same as :meth:`step_masks`)."""
        out = np.ones((len(self.blocks), size), dtype=bool)
        for i, m in enumerate(self._full):
            if m is not None:
                out[i] = m
        return out
