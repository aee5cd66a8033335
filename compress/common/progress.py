"""How long-running library calls report progress; the CLI plugs in rich bars.

The protocol: ``with progress.task(description, total) as advance:`` then ``advance(n, **fields)``
after each unit of work (``n`` units of ``total``). A field ``images=k`` says the advance processed
``k`` images (training reports each global batch's size): a display shows images per second from
it. ``Throughput`` is the arithmetic a display needs (rate, time left), kept here so every display
computes them alike.
"""
from __future__ import annotations

import contextlib
import time


class Progress:
    """No-op base: library code calls these; the CLI overrides them."""

    @contextlib.contextmanager
    def task(self, description: str, total: int | None):
        yield lambda n=1, **fields: None

    def log(self, message: str) -> None:
        pass


NULL = Progress()


def format_seconds(s: float) -> str:
    s = int(round(s))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Throughput:
    """A task's images per second and time left, from its advances (``clock`` in seconds, monotonic).

    The time left is the mean time per unit so far times the units left: it includes whatever
    happens between units (e.g. validation after each epoch), so it does not undershoot.
    """

    def __init__(self, total: int | None, clock=time.monotonic):
        self.total, self.clock = total, clock
        self.start = clock()
        self.done = 0
        self.images = 0

    def advance(self, n: int = 1, images: int | None = None) -> None:
        self.done += n
        self.images += int(images or 0)

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    @property
    def images_per_s(self) -> float | None:
        t = self.elapsed
        return self.images / t if self.images and t > 0 else None

    @property
    def eta_s(self) -> float | None:
        if not self.total or not self.done:
            return None
        return self.elapsed * max(0, self.total - self.done) / self.done

    def describe(self) -> str:
        """E.g. ``'412 img/s, ETA 1:05'`` (parts unknown yet are left out)."""
        parts = []
        if self.images_per_s is not None:
            rate = self.images_per_s
            parts.append(f"{rate:.1f} img/s" if rate < 10 else f"{rate:.0f} img/s")
        if self.eta_s is not None:
            parts.append(f"ETA {format_seconds(self.eta_s)}")
        return ", ".join(parts)
