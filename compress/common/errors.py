"""One exception type for every user-facing failure, carrying its exit code.

The CLI turns it into a single ``error: ...`` line; library users catch it.

A message about a parameter names the *parameter*, marked with backticks in the
message given here (```epochs` must be >= 0``) and listed in ``param``. Python callers
see the plain name (``epochs must be >= 0``); the CLI renders the mark as the flag that
sets the parameter (``--epochs must be >= 0``), see :meth:`CompressError.render`.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

EXIT_USAGE = 2        # bad input: files, flags, data
EXIT_PARITY = 3       # an exported model disagrees with its source
EXIT_ACCURACY = 4     # a quantized model lost more accuracy than allowed


class CompressError(Exception):
    """A failure to report to the user in one line.

    ``param``: the parameter (or parameters) the message is about, e.g. ``"epochs"``.
    """

    def __init__(self, message: str, exit_code: int = EXIT_USAGE, *, param: str | Sequence[str] | None = None):
        self.template = message
        self.params: tuple[str, ...] = (param,) if isinstance(param, str) else tuple(param or ())
        self.exit_code = exit_code
        super().__init__(self.render())

    def __reduce__(self):  # keep the exit code and parameters across processes (measure_latency_isolated)
        return _rebuild, (self.template, self.exit_code, self.params)

    @property
    def param(self) -> str | None:
        return self.params[0] if self.params else None

    def render(self, name: Callable[[str], str] = str) -> str:
        """The message with each parameter shown as ``name(param)`` (by default the plain name).

        A parameter marked in the message (```epochs```) is replaced where marked; an
        unmarked one only where it opens the message (``epochs must be >= 0``).
        """
        text = self.template
        for p in self.params:
            if f"`{p}`" in text:
                text = text.replace(f"`{p}`", name(p))
            else:
                text = re.sub(rf"^{re.escape(p)}(?![\w-])", lambda _m, p=p: name(p), text, count=1)
        return text


def _rebuild(template: str, exit_code: int, params: tuple) -> CompressError:
    return CompressError(template, exit_code, param=params)
