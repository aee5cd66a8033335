"""The true ablation: every removable unit (block or branch) alone switched off on held-out images, no healing,
and how well each criterion's ranking matches it.

This is the check of the product's central claim: DropPath's random drops are a free randomized ablation, so the
*importance* recorded while training (E[loss | dropped] - E[loss | kept], at no extra forward pass) should rank
the units as removing them does. Here a unit is switched off as DropPath drops it
(:func:`compress.graph.surgery.switched_off`: what the surgery self-check proves equal to removing it), one at a time,
and the split's mean cross-entropy and accuracy are measured against the full model: ``N + 1`` passes over the
images for ``N`` units. Each criterion's scores (the higher, the more the unit matters) are then compared with
the true loss increase by Spearman's and Kendall's rank correlations (scipy), with the forward passes each
criterion costs beyond training.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import paddle
from scipy import stats as sps

from ..graph.surgery import RemovedUnit, switched_off


@dataclass
class SplitScore:
    """Mean cross-entropy and accuracy of a model on ``images`` images of a split (``losses``: per image, in
    order, for paired differences; not written to JSON)."""

    loss: float
    accuracy: float
    images: int
    losses: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        return {"loss": self.loss, "accuracy": self.accuracy, "images": self.images}


@dataclass
class UnitAblation:
    """One unit switched off alone: the true changes, beside each criterion's score for it (None: not defined)."""

    index: int
    unit: str
    loss_increase: float
    accuracy_change: float
    scores: dict = field(default_factory=dict)      # criterion -> score (higher: matters more)
    importance_stderr: float | None = None
    loss_increase_stderr: float | None = None       # of the paired per-image differences


@dataclass
class Fidelity:
    """How one criterion's ranking matches the true one: rank correlations over the units it scores, and its
    cost in forward passes beyond training (``per``: what one pass covers)."""

    criterion: str
    spearman: float | None
    kendall: float | None
    units: int
    extra_passes: str
    note: str = ""


@dataclass
class Ablation:
    """The whole check (``compress ablate``)."""

    split: str
    base: SplitScore
    units: list[UnitAblation]
    fidelity: list[Fidelity]
    true_passes: int
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"split": self.split, "base": self.base.to_json(), "units": [asdict(u) for u in self.units],
                "fidelity": [asdict(f) for f in self.fidelity], "true_passes": self.true_passes,
                "seconds": round(self.seconds, 2)}


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def split_score(model, batches: Callable, max_images: int | None = None) -> SplitScore:
    """Mean cross-entropy and accuracy of ``model`` (eval, no gradients) over ``batches()`` (an iterable of
    (images, labels) paddle tensors), at most ``max_images`` of them."""
    losses, right, n = [], 0, 0
    model.eval()
    with paddle.no_grad():
        for x, y in batches():
            if max_images is not None and n >= max_images:
                break
            if max_images is not None and n + len(y) > max_images:
                x, y = x[:max_images - n], y[:max_images - n]
            logp = _log_softmax(model(x).numpy())
            labels = np.asarray(y.numpy()).astype(np.int64).ravel()
            losses.append(-logp[np.arange(len(labels)), labels])
            right += int((logp.argmax(1) == labels).sum())
            n += len(labels)
    per = np.concatenate(losses) if losses else np.zeros(0)
    return SplitScore(float(per.mean()) if n else math.nan, right / n if n else math.nan, n, per)


def leave_one_out(model, units: list[RemovedUnit], batches: Callable, max_images: int | None = None,
                  advance: Callable = lambda n=1, **f: None) -> tuple[SplitScore, list[tuple[float, float, float]]]:
    """(the full model's score, per unit (loss increase, its standard error over the images, accuracy change)
    with that unit alone switched off). The images come in the same order on every pass (an evaluation loader),
    so the increase is a paired difference per image."""
    base = split_score(model, batches, max_images)
    advance(1)
    out = []
    for u in units:
        with switched_off(model, [u]):
            s = split_score(model, batches, max_images)
        diff = s.losses - base.losses
        se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.nan
        out.append((s.loss - base.loss, se, s.accuracy - base.accuracy))
        advance(1)
    return base, out


def _correlations(scores: list, truth: list[float]) -> tuple[float | None, float | None, int]:
    pairs = [(s, t) for s, t in zip(scores, truth) if s is not None and math.isfinite(s) and math.isfinite(t)]
    if len(pairs) < 3 or len({s for s, _ in pairs}) < 2 or len({t for _, t in pairs}) < 2:
        return None, None, len(pairs)
    a, b = zip(*pairs)
    return float(sps.spearmanr(a, b).statistic), float(sps.kendalltau(a, b).statistic), len(pairs)


def fidelity(units: list[UnitAblation], costs: dict[str, str], notes: dict[str, str] | None = None) -> list[Fidelity]:
    """Each criterion present in the units' scores, ranked against the true loss increase."""
    truth = [u.loss_increase for u in units]
    names = list(dict.fromkeys(k for u in units for k in u.scores))
    out = []
    for name in names:
        rho, tau, n = _correlations([u.scores.get(name) for u in units], truth)
        out.append(Fidelity(name, rho, tau, n, costs.get(name, "?"), (notes or {}).get(name, "")))
    return out
