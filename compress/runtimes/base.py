"""What every runtime's runner offers: one loaded model, ``run(x) -> logits``."""
from __future__ import annotations

from pathlib import Path

import numpy as np


class Runner:
    """One loaded model on one runtime. Subclasses set ``runtime``, ``path``, ``threads``."""

    runtime = "?"

    def __init__(self):
        self.path: Path | None = None
        self.threads = 1
        self.input_shape: tuple[int, ...] | None = None  # C,H,W when the model file says so

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {"runtime": self.runtime, "path": str(self.path), "threads": self.threads}
