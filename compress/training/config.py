"""How to train (:class:`FitConfig`, validated once on construction) and what a run gave (:class:`FitResult`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..common.errors import CompressError
from ..graph.branches import check_granularity
from .schedules import make_schedule
from .statistics import SurvivalStats


@dataclass
class FitConfig:
    """How to train; validates itself on construction (errors name the parameter).

    The defaults are ``compress train``'s (the CLI reads them from here): DropPath at a mean rate of 0.1
    under the linear schedule. Healing (:class:`compress.workflows.prune.HealConfig`) trains without it.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    drop_path_rate: float = 0.1
    schedule: str = "linear"
    target_keep: float | None = None
    warmup_epochs: int | None = None
    max_rate: float = 0.7       # adaptive with a target: final drop rate of the targeted blocks
    label_smoothing: float = 0.0
    # healing: distillation from a teacher's logits
    alpha: float = 0.5          # weight of the KD term
    temperature: float = 2.0
    hidden_weight: float = 0.0  # with a teacher: weight (inside alpha) of the MSE on the classifier's input
    patience: int | None = None  # early stopping on val accuracy; None = run all epochs
    keep_best: bool = False
    granularity: str = "block"   # the units DropPath drives: whole blocks, or branches (compress.graph.branches)

    def __post_init__(self):
        finite = math.isfinite(self.lr) and math.isfinite(self.weight_decay)
        if self.epochs < 0 or self.batch_size < 1 or not (finite and self.lr > 0 and self.weight_decay >= 0):
            raise CompressError("`epochs` must be >= 0, `batch_size` >= 1, `lr` > 0 and `weight_decay` >= 0 (finite)",
                                param=("epochs", "batch_size", "lr", "weight_decay"))
        if check_granularity(self.granularity) is None:
            raise CompressError("`granularity` must be one of block, branch", param="granularity")
        if not (math.isfinite(self.hidden_weight) and self.hidden_weight >= 0):
            raise CompressError("`hidden_weight` must be a finite number >= 0", param="hidden_weight")
        # the schedule checks its own options: schedule, drop_path_rate, target_keep, max_rate
        make_schedule(self.schedule, 1, self.drop_path_rate, target_keep=self.target_keep,
                      warmup=self.warmup_epochs, max_rate=self.max_rate)


@dataclass
class FitResult:
    history: list = field(default_factory=list)
    stats: SurvivalStats | None = None
    schedule: dict | None = None
    best_epoch: int | None = None
    seconds: float = 0.0
