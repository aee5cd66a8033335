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

Two parts do the work: :class:`BlockMasks` draws every unit's mask per forward (for the global batch under
data parallel, keeping this rank's part) and :class:`ResidualProbe` measures each unit's residual ratio and
reports it to a ``SurvivalStats`` (the ratios summed on the device, copied to the host when the statistics
are read); :class:`StochasticDepth` attaches both to the model through hooks.
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
            mask, keep = sd.mask_for_call(g, x, self.training)
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


class BlockMasks:
    """Every unit's per-sample mask for the current forward, drawn under per-unit ``rates``.

    Cheap per step: at the first unit of each training forward the masks of all units are drawn in one
    ``paddle.rand`` (the same numbers, in the same order, as one draw per unit), copied to the host once,
    and handed to the units as one tensor. Data parallel (:meth:`set_step`): the masks are drawn for the
    global batch (every rank seeds the generator alike) and this rank keeps its part.
    """

    def __init__(self, n: int):
        self.rates = np.zeros(n)
        self.tensor = [None] * n       # per unit: float32 mask tensor (batch,), or None (kept whole)
        self.host = [None] * n         # the same on the host, bool (batch,), or None
        self._full = [None] * n        # the masks of the whole global batch (data parallel), or None
        self._step: tuple[int, int, int] | None = None   # (global batch size, start, size) of this rank's part
        self._forward = 0              # counts the model's forward passes
        self._drawn = -1               # the forward whose masks were drawn together
        self._used = [-1] * n          # the forward in which each unit last took its mask

    def set_rates(self, rates) -> None:
        rates = np.asarray(rates, dtype=np.float64)
        if rates.shape != self.rates.shape:
            raise ValueError(f"{len(self.rates)} drop rates needed, got {rates.shape}")
        self.rates = rates.copy()

    def set_step(self, global_size: int, start: int, size: int) -> None:
        """The next step's global batch size and this rank's part of it (``start``, ``size``)."""
        self._step = (global_size, start, size)

    @property
    def global_size(self) -> int | None:
        """The last step's global batch size (None: no step was set, one process)."""
        return self._step[0] if self._step is not None else None

    def keep(self, i: int) -> float:
        return 1.0 - float(self.rates[i])

    def new_forward(self) -> None:
        self._forward += 1

    def _draw(self, units: list[int], batch: int) -> None:
        """Masks of ``units`` (rates > 0) in one draw: row k is what ``paddle.rand([batch])`` would
        have given the k-th unit on its own (same generator, same order)."""
        rates = np.float32(self.rates[units])[:, None]  # compared in float32, as paddle compares
        size, start, local = self._step if self._step is not None else (batch, 0, batch)
        if local != batch:  # not this rank's part of the step's batch (a forward outside the step)
            size, start = batch, 0
        full = paddle.rand([len(units), size]).numpy() >= rates
        host = full[:, start:start + batch]
        rows = paddle.unbind(paddle.to_tensor(host.astype(np.float32)))
        for k, i in enumerate(units):
            self.host[i], self._full[i], self.tensor[i] = host[k], full[k], rows[k]

    def take(self, i: int, training: bool, batch: int) -> None:
        """Unit ``i`` starts in this forward: its mask (none in eval mode or at rate 0)."""
        if not training or float(self.rates[i]) <= 0.0:
            self.host[i] = self._full[i] = self.tensor[i] = None
            return
        if self._used[i] == self._forward:
            self._draw([i], batch)  # called again in the same forward (or outside the model's)
        elif self._drawn != self._forward:
            # the first unit of this forward: draw every unit's mask at once
            self._draw([j for j in range(len(self.rates)) if float(self.rates[j]) > 0.0], batch)
            self._drawn = self._forward
        self._used[i] = self._forward

    def step_masks(self, batch: int) -> np.ndarray:
        """(units, batch) booleans: which samples went through which unit in the last forward."""
        return self._stack(self.host, batch)

    def global_masks(self, size: int) -> np.ndarray:
        """(units, size) booleans for the whole global batch of the last forward (data parallel; in one
        process the same as :meth:`step_masks`)."""
        return self._stack(self._full, size)

    @staticmethod
    def _stack(masks, size: int) -> np.ndarray:
        out = np.ones((len(masks), size), dtype=bool)
        for i, m in enumerate(masks):
            if m is not None:
                out[i] = m
        return out


class ResidualProbe:
    """Each unit's residual ratio ``|B(x) - x| / |x|`` per sample, summed over the samples that went through.

    Cheap per step: two squared norms per unit, reduced once per step on the device (:meth:`end_forward`);
    the sums reach the host, and ``stats``, only when the statistics are read (:meth:`flush`). ``reduce``
    (data parallel) adds an array over all ranks, so every rank holds the global sums.
    """

    def __init__(self, stats, reduce=None):
        self.stats, self.reduce = stats, reduce
        self._last = {}     # unit -> (|B(x)-x|², |x|², weights, count) of the last forward
        self._steps = []    # per forward: device (n probed,) ratio sums, unit indices, counts

    def record(self, i: int, x, output, delta, host, scale: float) -> None:
        """Unit ``i``'s input ``x`` and ``output`` (or ``delta`` = output - x); ``host``: its mask (None: all
        went through); ``scale`` weighs each sample's ratio (``keep`` undoes an own DropPath's 1/keep)."""
        if i in self._last:
            self.end_forward()
        with paddle.no_grad():  # squared norms: paddle's CPU p_norm is ~3x slower than square + sum
            dn = paddle.square((output - x if delta is None else delta).flatten(1)).sum(axis=1)
            xn = paddle.square(x.flatten(1)).sum(axis=1)
        weight = np.ones(x.shape[0], np.float32) if host is None else host.astype(np.float32)
        count = x.shape[0] if host is None else int(host.sum())
        self._last[i] = (dn, xn, weight * np.float32(scale) if scale != 1.0 else weight, count)

    def end_forward(self) -> None:
        """The last forward's probe, reduced to one sum per unit on the device (a few ops per step)."""
        if not self._last:
            return
        idx = sorted(self._last)
        parts = [self._last[i] for i in idx]
        self._last = {}
        with paddle.no_grad():
            dn, xn = paddle.stack([p[0] for p in parts]).sqrt(), paddle.stack([p[1] for p in parts]).sqrt()
            w = paddle.to_tensor(np.stack([p[2] for p in parts]))
            sums = (dn * w / (xn + 1e-12)).sum(axis=1)
        counts = np.array([p[3] for p in parts], np.float64)
        self._steps.append((sums, idx, counts))
        if len(self._steps) >= 1024:  # bounded: an epoch-long run of steps without a read still syncs now and then
            self.flush()

    def flush(self) -> None:
        """Add the residual-ratio sums kept on the device to the statistics: one host copy."""
        self.end_forward()
        if not self._steps or self.stats is None:
            self._steps = []
            return
        steps, self._steps = self._steps, []
        values = paddle.concat([s for s, _, _ in steps]).numpy().astype(np.float64)
        units = np.concatenate([idx for _, idx, _ in steps])
        counts = np.concatenate([c for _, _, c in steps])
        if self.reduce is not None:  # data parallel: every rank's samples
            both = self.reduce(np.concatenate([values, counts]))
            values, counts = both[:len(values)], both[len(values):]
        self.stats.add_residual_sums(units, values, counts)


class StochasticDepth:
    """Attach block-level DropPath to ``blocks`` of ``model``; the rates are set per epoch (:meth:`set_rates`).

    The masks come from :class:`BlockMasks`; with ``stats`` and ``residual_ratio``, a :class:`ResidualProbe`
    feeds them the residual ratios (``reduce``: data parallel, adds an array over all ranks).
    """

    def __init__(self, model, blocks, stats=None, residual_ratio: bool = True, reduce=None):
        self.model = model
        self.blocks = blocks
        self.stats = stats
        self.masks = BlockMasks(len(blocks))
        self.probe = ResidualProbe(stats, reduce) if stats is not None and residual_ratio else None
        self._input = [None] * len(blocks)
        self._handles = []
        self._swapped = []  # (block layer, name, original layer)
        # the units grouped by their block: a whole block is a group of one; a block's branches share one group,
        # whose k-th DropPath call in a forward is the branch (unit) with call k
        self._groups = _groups(blocks)
        self._calls = [0] * len(self._groups)     # per group: DropPath calls so far in the block's forward
        self._branch_in = {}                       # branch unit -> the input of its body (the residual stream)

    @property
    def rates(self) -> np.ndarray:
        return self.masks.rates

    def set_rates(self, rates) -> None:
        """Per-unit drop rates from now on (a schedule sets them each epoch)."""
        self.masks.set_rates(rates)

    def set_step(self, global_size: int, start: int, size: int) -> None:
        """Data parallel: the next step's global batch size and this rank's part of it."""
        self.masks.set_step(global_size, start, size)

    def step_masks(self, batch: int) -> np.ndarray:
        return self.masks.step_masks(batch)

    def global_masks(self, size: int) -> np.ndarray:
        return self.masks.global_masks(size)

    def flush(self) -> None:
        """The residual ratios kept on the device, into the statistics."""
        if self.probe is not None:
            self.probe.flush()

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

    # -- hooks
    def _model_pre_hook(self, layer, inputs):
        self.masks.new_forward()
        if self.probe is not None:
            self.probe.end_forward()

    def _pre_hook(self, g):
        units = self._groups[g].units

        def hook(layer, inputs):
            x = inputs[0]
            self._calls[g] = 0
            for i in units:
                self._input[i] = x
                self.masks.take(i, layer.training, x.shape[0])
        return hook

    def mask_for_call(self, g: int, x, training: bool):
        """(mask or None, keep) for a call of one of group ``g``'s own DropPath layers; under branch
        granularity the k-th call in the block's forward is branch k, whose call also feeds its probe."""
        group = self._groups[g]
        if not group.by_call:
            i = group.units[0]
            return self.masks.tensor[i], self.masks.keep(i)
        k, self._calls[g] = self._calls[g], self._calls[g] + 1
        i = group.by_call.get(k)
        if i is None:  # a removed branch's call (its body gives zeros)
            return None, 1.0
        keep = self.masks.keep(i)
        x_in = self._branch_in.pop(i, None)
        if training and self.probe is not None and x_in is not None:
            self.probe.record(i, x_in, None, x, self.masks.host[i], 1.0)
        return self.masks.tensor[i], keep

    def _post_hook(self, g, own: bool):
        group = self._groups[g]
        if group.by_call:  # branches: their DropPath calls did the work
            def clear(layer, inputs, output):
                for i in group.units:
                    self._input[i] = None
            return clear
        i = group.units[0]

        def hook(layer, inputs, output):
            x, mask = self._input[i], self.masks.tensor[i]
            self._input[i] = None
            if not layer.training:
                return None
            keep = self.masks.keep(i)
            gate = not own and mask is not None
            delta = output - x if gate else None
            if self.probe is not None:  # an own DropPath scaled the kept branches by 1/keep inside the block: undo it
                self.probe.record(i, x, output, delta, self.masks.host[i], keep if own and mask is not None else 1.0)
            return x + _bcast(mask, x) * delta / keep if gate else None
        return hook
