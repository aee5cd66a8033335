"""rich progress bars on stderr for the library's Progress protocol."""
from __future__ import annotations

import contextlib

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichBars, TextColumn, TimeElapsedColumn

from compress.common.progress import Progress, Throughput

stderr = Console(stderr=True, soft_wrap=True)


class RichProgress(Progress):
    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    @contextlib.contextmanager
    def task(self, description, total):
        if self.quiet:
            yield lambda n=1, **f: None
            return
        bars = RichBars(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("{task.fields[rate]}"),
                        console=stderr, transient=True)
        with bars:
            tid = bars.add_task(description, total=total, info="", rate="")
            meter = Throughput(total)

            def advance(n=1, images=None, **fields):
                meter.advance(n, images)
                info = " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
                bars.update(tid, advance=n, info=info, rate=meter.describe())
            yield advance

    def log(self, message):
        if not self.quiet:
            stderr.print(f"[dim]{message}[/dim]", highlight=False)
