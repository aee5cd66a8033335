"""How far a test accuracy, and a difference between two, can be trusted: what the report says beside them.

An accuracy is ``k`` right of ``n`` test images; its 95 % interval is Wilson's (sound at small ``n`` and near
0 or 1, where the normal approximation is not). Two models scored on the *same* images differ only on the
images where one is right and the other wrong; McNemar's exact test asks whether those discordant images
split unevenly by more than chance (a two-sided binomial test at 1/2). A difference whose p-value is 0.05 or
more is *inside the noise*: the test split is too small to tell the two models apart.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
NOISE_P = 0.05      # a difference with p >= this is inside the noise


def wilson_interval(right: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The ``confidence`` interval of an accuracy of ``right``/``total`` (Wilson score); None without images."""
    if total <= 0:
        return None
    ci = sps.binomtest(int(right), int(total)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class PairedDifference:
    """Model B against model A on the same test images: B's accuracy minus A's, in images and points."""

    images: int          # test images both were scored on
    gained: int          # right for B, wrong for A
    lost: int            # wrong for B, right for A
    p_value: float       # McNemar's exact two-sided test

    @property
    def net_images(self) -> int:
        return self.gained - self.lost

    @property
    def points(self) -> float:
        return 100.0 * self.net_images / self.images if self.images else math.nan

    @property
    def inside_noise(self) -> bool:
        return self.p_value >= NOISE_P

    def to_json(self) -> dict:
        return {**asdict(self), "net_images": self.net_images, "inside_noise": self.inside_noise}


def paired_difference(correct_a, correct_b) -> PairedDifference:
    """B against A from their per-image correctness (booleans over the same images, in the same order)."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"the two models were scored on different images ({a.size} and {b.size})")
    gained, lost = int(np.sum(b & ~a)), int(np.sum(a & ~b))
    p = 1.0 if gained + lost == 0 else float(sps.binomtest(gained, gained + lost, 0.5).pvalue)
    return PairedDifference(int(a.size), gained, lost, min(1.0, p))
