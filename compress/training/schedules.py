"""Per-block drop-rate schedules, in a registry keyed by name.

* ``uniform``: every block at ``rate``.
* ``linear``: d_l = rate * l / (L - 1); shallow blocks are almost never dropped.
* ``adaptive``: after a warm-up at ``rate``, each block's rate follows its
  measured importance (rate ~ 1/importance, mean held at ``rate``). With
  ``target_keep`` it instead singles out the (1 - K) * L least important blocks
  and anneals their rate towards ``max_rate`` while the rest sit at ``floor``,
  re-ranking every epoch: the network learns to live without exactly the blocks
  that will be removed.
"""
from __future__ import annotations

import math

import numpy as np

from ..common.errors import CompressError


def n_keep(n_blocks: int, keep: float) -> int:
    """Blocks kept for a keep ratio: round half up, at least one."""
    return max(1, min(n_blocks, int(math.floor(keep * n_blocks + 0.5 + 1e-9))))  # 1e-9: 0.58*25 is 14.4999...


class Schedule:
    name = "base"

    def __init__(self, n_blocks: int, rate: float, **_):
        if not 0.0 <= rate < 1.0:
            raise CompressError(f"`drop_path_rate` must be in [0, 1), got {rate}", param="drop_path_rate")
        self.n = n_blocks
        self.rate = rate

    def rates(self, epoch: int, epochs: int, stats=None) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "rate": self.rate}

    def state(self) -> dict:
        """What the schedule carries from epoch to epoch (JSON), for a checkpoint."""
        return {}

    def load_state(self, state: dict) -> None:
        """Put back what :meth:`state` gave."""


class Uniform(Schedule):
    name = "uniform"

    def rates(self, epoch, epochs, stats=None):
        return np.full(self.n, self.rate)


class Linear(Schedule):
    name = "linear"

    def rates(self, epoch, epochs, stats=None):
        if self.n == 1:
            return np.full(1, self.rate)
        return self.rate * np.arange(self.n) / (self.n - 1)


class Adaptive(Schedule):
    name = "adaptive"

    def __init__(self, n_blocks, rate, target_keep: float | None = None, warmup: int | None = None,
                 floor: float = 0.02, cap: float = 0.8, max_rate: float = 0.7, **_):
        super().__init__(n_blocks, rate)
        if target_keep is not None and not 0.0 < target_keep <= 1.0:
            raise CompressError(f"`target_keep` must be in (0, 1], got {target_keep}", param="target_keep")
        if target_keep is not None and not rate <= max_rate < 1.0:
            raise CompressError(f"`max_rate` ({max_rate}) must be in [`drop_path_rate` ({rate}), 1)",
                                param=("max_rate", "drop_path_rate"))
        self.target_keep = target_keep
        self.warmup = warmup
        self.floor, self.cap, self.max_rate = floor, cap, max_rate
        self.targeted: list[int] = []

    def _warmup(self, epochs):
        return self.warmup if self.warmup is not None else max(1, epochs // 5)

    def rates(self, epoch, epochs, stats=None):
        warm = self._warmup(epochs)
        if epoch < warm or stats is None or self.rate == 0.0:
            return np.full(self.n, self.rate)
        imp, se = stats.importance()
        known = ~np.isnan(imp)
        if self.target_keep is not None:
            n_drop = self.n - n_keep(self.n, self.target_keep)
            self.targeted = self._retarget(np.where(known, imp, np.inf), np.nan_to_num(se, nan=np.inf), n_drop)
            progress = min(1.0, (epoch - warm + 1) / max(1, epochs - warm))
            out = np.full(self.n, self.floor)
            out[self.targeted] = self.rate + (self.max_rate - self.rate) * progress
            return out
        inv = 1.0 / np.maximum(np.where(known, imp, np.nanmedian(imp) if known.any() else 1.0), 1e-3)
        # rates = clip(s * inv, floor, cap); mean(rates) grows monotonically with s: bisect for the target mean
        lo, hi = 0.0, self.cap / inv.min()
        for _ in range(100):
            s = (lo + hi) / 2
            if np.clip(s * inv, self.floor, self.cap).mean() < self.rate:
                lo = s
            else:
                hi = s
        return np.clip(hi * inv, self.floor, self.cap)

    def _retarget(self, imp, se, n_drop) -> list[int]:
        """The n_drop least important blocks, with hysteresis: a targeted block is only swapped
        for one whose importance is lower by more than two standard errors, so noisy,
        near-equal estimates do not make the target set flip from epoch to epoch."""
        order = [int(i) for i in np.argsort(imp, kind="stable")]
        if not self.targeted:
            return sorted(order[:n_drop])
        current = list(self.targeted)
        for cand in order:
            if cand in current:
                continue
            worst = max(current, key=lambda i: imp[i])
            if imp[cand] + 2 * se[cand] < imp[worst]:
                current[current.index(worst)] = cand
            else:
                break
        return sorted(current)

    def state(self) -> dict:
        return {"targeted": [int(i) for i in self.targeted]}

    def load_state(self, state: dict) -> None:
        self.targeted = [int(i) for i in state.get("targeted", [])]

    def describe(self):
        return {"name": self.name, "rate": self.rate, "target_keep": self.target_keep,
                "floor": self.floor, "cap": self.cap, "max_rate": self.max_rate, "targeted": self.targeted}


SCHEDULES = {"uniform": Uniform, "linear": Linear, "adaptive": Adaptive}


def never_adapted(schedule: dict | None, history: list | None) -> str | None:
    """Why a run's adaptive schedule never adapted (every epoch drew the same rate for every unit: the run
    ended within its warm-up), or None when it adapted, was not adaptive, or did not record its rates."""
    if not schedule or schedule.get("name") != "adaptive":
        return None
    rates = [r["rates"] for r in history or [] if isinstance(r, dict) and r.get("rates")]
    if not rates or any(max(r) - min(r) > 1e-9 for r in rates):
        return None
    return (f"the adaptive schedule never adapted: all {len(rates)} epoch(s) ran at one rate for every unit "
            "(the warm-up is max(1, epochs // 5) epochs unless `warmup_epochs` says otherwise; train at least "
            "5 epochs)")


def make_schedule(name: str, n_blocks: int, rate: float, **opts) -> Schedule:
    if name not in SCHEDULES:
        raise CompressError(f"unknown schedule {name!r}: use one of {', '.join(SCHEDULES)}", param="schedule")
    return SCHEDULES[name](n_blocks, rate, **opts)
