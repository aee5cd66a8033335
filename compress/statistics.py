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


class SurvivalStats:
    def __init__(self, n_blocks: int, names: list[str] | None = None):
        self.names = names or [str(i) for i in range(n_blocks)]
        self.sums = {f: np.zeros(n_blocks, dtype=np.float64) for f in FIELDS}

    def __len__(self):
        return len(self.names)

    def update(self, masks: np.ndarray, losses: np.ndarray) -> None:
        """masks: (blocks, batch) bool, True where the sample went through the block; losses: (batch,)."""
        m = masks.astype(np.float64)
        d = 1.0 - m
        s = self.sums
        s["seen"] += masks.shape[1]
        s["kept"] += m.sum(1)
        c = losses - losses.mean()
        s["loss_kept"] += m @ losses
        s["loss_drop"] += d @ losses
        s["c_kept"] += m @ c
        s["c2_kept"] += m @ (c ** 2)
        s["c_drop"] += d @ c
        s["c2_drop"] += d @ (c ** 2)

    def add_residual(self, i: int, ratios: np.ndarray) -> None:
        self.sums["resid_sum"][i] += float(np.sum(ratios))
        self.sums["resid_n"][i] += len(ratios)

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
