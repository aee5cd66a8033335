"""Survival statistics of residual blocks, streamed while training.

The random DropPath masks are a free randomized ablation: for every block, the
per-sample loss of samples that skipped it vs. those that went through it
estimates how much the network needs it. Only running sums are kept, so memory
does not grow with the data.

Importance is computed on losses centred on their batch mean: the network (and
an adaptive schedule's rates) change while training, so raw losses of "dropped"
and "kept" samples would come from different moments and the time trend would
masquerade as importance. Centring compares samples of the same step.
"""
from __future__ import annotations

import math

import numpy as np

FIELDS = ("seen", "kept", "loss_kept", "loss_drop", "c_kept", "c2_kept", "c_drop", "c2_drop", "resid_sum", "resid_n")


def increments(masks: np.ndarray, losses: np.ndarray) -> dict[str, np.ndarray | int]:
    """One step's additions to the loss sums (see :meth:`SurvivalStats.update`), computed once
    for every set of statistics the step feeds."""
    m = masks.astype(np.float64)
    d = 1.0 - m
    c = losses - losses.mean()
    c2 = c ** 2
    return {"seen": masks.shape[1], "kept": m.sum(1), "loss_kept": m @ losses, "loss_drop": d @ losses,
            "c_kept": m @ c, "c2_kept": m @ c2, "c_drop": d @ c, "c2_drop": d @ c2}


class SurvivalStats:
    """Running sums per block. Sums a producer keeps elsewhere (the residual ratios, summed on the
    device) are added by the callables given to :meth:`defer`, run whenever the sums are read."""

    def __init__(self, n_blocks: int, names: list[str] | None = None):
        self.names = names or [str(i) for i in range(n_blocks)]
        self._sums = {f: np.zeros(n_blocks, dtype=np.float64) for f in FIELDS}
        self._deferred = []

    def __len__(self):
        return len(self.names)

    @property
    def sums(self) -> dict[str, np.ndarray]:
        for flush in list(self._deferred):
            flush()
        return self._sums

    def defer(self, flush) -> None:
        """Register ``flush()``, which adds sums kept elsewhere, to run before every read."""
        self._deferred.append(flush)

    def undefer(self, flush) -> None:
        self._deferred = [f for f in self._deferred if f != flush]

    def update(self, masks: np.ndarray, losses: np.ndarray) -> None:
        """masks: (blocks, batch) bool, True where the sample went through the block; losses: (batch,)."""
        self.add(increments(masks, losses))

    def add(self, inc: dict) -> None:
        """Add one step's :func:`increments`."""
        for k, v in inc.items():
            self._sums[k] += v

    def add_residual_sums(self, blocks: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> None:
        """Add per-step residual-ratio sums and sample counts; ``blocks[k]`` says whose is entry k."""
        np.add.at(self._sums["resid_sum"], blocks, sums)
        np.add.at(self._sums["resid_n"], blocks, counts)

    def decay(self, factor: float) -> None:
        """Down-weight the past (used by the adaptive schedule to follow a moving network)."""
        for v in self.sums.values():
            v *= factor

    # -- derived
    def _mean_var(self, n, s1, s2):
        mean = s1 / n if n > 0 else math.nan
        var = (s2 - n * mean * mean) / (n - 1) if n > 1 else math.nan
        return mean, max(var, 0.0) if not math.isnan(var) else var

    def importance(self) -> tuple[np.ndarray, np.ndarray]:
        imp, se = [], []
        for b in self.summary():
            imp.append(b["importance"] if b["importance"] is not None else math.nan)
            se.append(b["importance_stderr"] if b["importance_stderr"] is not None else math.nan)
        return np.array(imp), np.array(se)

    def summary(self) -> list[dict]:
        s = self.sums
        out = []
        for i, name in enumerate(self.names):
            seen, kept = s["seen"][i], s["kept"][i]
            dropped = seen - kept
            mk = s["loss_kept"][i] / kept if kept > 0 else math.nan
            md = s["loss_drop"][i] / dropped if dropped > 0 else math.nan
            ck, vk = self._mean_var(kept, s["c_kept"][i], s["c2_kept"][i])
            cd, vd = self._mean_var(dropped, s["c_drop"][i], s["c2_drop"][i])
            imp = cd - ck
            se = math.sqrt(vk / kept + vd / dropped) if kept > 1 and dropped > 1 else math.nan
            rr = s["resid_sum"][i] / s["resid_n"][i] if s["resid_n"][i] > 0 else math.nan
            out.append({
                "block": name,
                "samples_seen": int(round(seen)),
                "samples_kept": int(round(kept)),
                "survival_rate": _f(kept / seen if seen else math.nan),
                "loss_kept": _f(mk),
                "loss_dropped": _f(md),
                "importance": _f(imp),
                "importance_stderr": _f(se),
                "residual_ratio": _f(rr),
            })
        return out

    def to_json(self) -> dict:
        return {"names": self.names, "sums": {k: v.tolist() for k, v in self.sums.items()}}


def _f(x: float):
    """JSON has no NaN: unknown values are null."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)
