"""How long-running library calls report progress; the CLI plugs in rich bars."""
from __future__ import annotations

import contextlib


class Progress:
    """No-op base: library code calls these; the CLI overrides them."""

    @contextlib.contextmanager
    def task(self, description: str, total: int | None):
        yield lambda n=1, **fields: None

    def log(self, message: str) -> None:
        pass


NULL = Progress()
