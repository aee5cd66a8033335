"""Parity: does an exported model compute what the source model computes?

Every runtime's logits on real test images are compared with the dygraph model's (the
reference) and must pass three checks (:class:`Tolerance`):

* **closeness**, ``allclose``-style and relative to the logits' magnitude:
  ``|out - ref| <= atol + rtol * |ref|``, where ``|ref|`` is the magnitude of that image's
  logits (the largest ``|logit|`` of the image). Why per image and not per element: a deep
  network's rounding error is proportional to its activations, not to each logit, so a logit
  that happens to be near zero carries the same absolute error as a large one. Measured on
  ``paddle.vision.models.resnet50`` at 224x224 (random weights, 1000 classes, logits up to
  2,060): oneDNN and ONNX Runtime differ from dygraph by up to 4.3e-3, also on logits as
  small as 0.02, which fails an elementwise ``1e-4 + 1e-4 * |ref_ij|`` (4.6x over) but uses 4 %
  of the per-image tolerance. A fixed ``atol`` alone (the earlier rule, 1e-4) cannot fit
  networks whose logits are large;
* **argmax agreement**: the share of images whose top-1 class is the reference's;
* **top-5 agreement**: the mean overlap of the top-5 class sets (top-k with k = min(5, classes)).

The defaults (``atol`` 1e-4, ``rtol`` 1e-4, 99 % agreement) pass ResNet-50 and MobileNetV2 at
224x224 in FP32 with oneDNN on and off and on ONNX Runtime (ResNet-50 uses about 5 % of the
tolerance), and refuse an exported model with one wrong weight (``tests/test_export.py``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..common.errors import EXIT_PARITY, CompressError

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4
DEFAULT_MIN_AGREEMENT = 0.99
TOP_K = 5


@dataclass(frozen=True)
class Tolerance:
    """How close an exported model's logits must be to the source's; validates itself (errors name the
    parameter). Agreements are fractions (0.99 = 99 % of the images)."""

    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    min_argmax_agreement: float = DEFAULT_MIN_AGREEMENT
    min_top5_agreement: float = DEFAULT_MIN_AGREEMENT

    def __post_init__(self):
        for name in ("atol", "rtol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
                raise CompressError(f"`{name}` must be a non-negative number, got {v!r}", param=name)
        for name in ("min_argmax_agreement", "min_top5_agreement"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                shown = f"{v * 100:g} %" if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v)
                raise CompressError(f"`{name}` must be between 0 and 100 %, got {shown}", param=name)

    def to_json(self) -> dict:
        return {**asdict(self), "rule": "|out - ref| <= atol + rtol * max|ref| of the image"}


def _top_k_overlap(ref: np.ndarray, out: np.ndarray, k: int) -> float:
    top_ref = np.argsort(-ref, axis=1, kind="stable")[:, :k]
    top_out = np.argsort(-out, axis=1, kind="stable")[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_ref, top_out)]))


def compare(ref: np.ndarray, out: np.ndarray, tol: Tolerance) -> dict:
    """Parity figures of ``out`` against the reference logits, with ``passed``."""
    n = int(len(ref))
    if out.shape != ref.shape or not np.isfinite(out).all():
        fig = {"n_inputs": n, "max_abs_diff": math.inf, "argmax_agreement": 0.0, "top5_agreement": 0.0,
               "worst_tolerance_use": math.inf, "shape": list(out.shape), "expected_shape": list(ref.shape)}
        return {**fig, "passed": False}
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    scale = np.abs(ref.astype(np.float64)).reshape(n, -1).max(axis=1).reshape((n,) + (1,) * (ref.ndim - 1))
    allowed = tol.atol + tol.rtol * scale
    use = diff / allowed if tol.atol > 0 else np.where(diff > 0, diff / np.maximum(allowed, 1e-300), 0.0)
    k = min(TOP_K, ref.shape[1]) if ref.ndim == 2 else 1
    fig = {
        "n_inputs": n,
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "max_rel_diff": float((diff / np.maximum(scale, 1e-12)).max()) if diff.size else 0.0,
        "logit_magnitude": float(scale.max()) if scale.size else 0.0,
        "worst_tolerance_use": float(use.max()) if use.size else 0.0,
        "elements_over_tolerance": int((use > 1).sum()),
        "argmax_agreement": float((out.argmax(1) == ref.argmax(1)).mean()) if n and ref.ndim == 2 else 1.0,
        "top5_agreement": _top_k_overlap(ref, out, k) if n and ref.ndim == 2 else 1.0,
        "top_k": k,
    }
    fig["passed"] = bool(fig["elements_over_tolerance"] == 0 and fig["argmax_agreement"] >= tol.min_argmax_agreement
                         and fig["top5_agreement"] >= tol.min_top5_agreement)
    return fig


def parity_error(runtime: str, fig: dict, tol: Tolerance) -> CompressError:
    """The one-line refusal (exit code 3) for a runtime that failed :func:`compare`."""
    return CompressError(
        f"{runtime} disagrees with the source model on {fig['n_inputs']} test images: max abs diff "
        f"{fig['max_abs_diff']:.3g} on logits of magnitude up to {fig.get('logit_magnitude', math.nan):.3g} "
        f"({fig['worst_tolerance_use']:.3g}x the allowed `atol` {tol.atol:g} + `rtol` {tol.rtol:g} x magnitude), "
        f"same argmax on {fig['argmax_agreement'] * 100:.2f}% (needed {tol.min_argmax_agreement * 100:g}%), "
        f"top-{fig.get('top_k', TOP_K)} overlap {fig['top5_agreement'] * 100:.2f}% (needed "
        f"{tol.min_top5_agreement * 100:g}%); nothing written",
        EXIT_PARITY, param=("atol", "rtol"))
