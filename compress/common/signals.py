"""Signals: SIGINT, SIGTERM and SIGHUP end a command cleanly.

The CLI calls :func:`install` (after Paddle is imported: Paddle's C++ core installs a SIGTERM
handler of its own that prints a C++ traceback). From then on the first of these signals
raises :class:`Interrupted` in the main thread. It derives from ``BaseException``, so no
``except Exception`` in the library swallows it: every ``with``/``finally`` on the way out
runs — temporary files and directories are removed, child processes are ended — and the
CLI prints one line and exits 128 + the signal number (130 for SIGINT, 143 for SIGTERM,
129 for SIGHUP). A second signal while that cleaning up runs ends the process at once.

:func:`deferred` holds these signals off for a few lines that must not be split (publishing
a model's weights and sidecar, swapping an export directory); :func:`die_with_parent`
makes a child process end with the process that started it (the latency worker).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading

SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)
_PR_SET_PDEATHSIG = 1

_received: int | None = None


class Interrupted(BaseException):
    """A command stopped by a signal; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}")


def received() -> int | None:
    """The signal that interrupted this process (once :func:`install` ed), or None."""
    return _received


def _handler(signum, frame):
    global _received
    if _received is not None:  # a second signal: stop cleaning up and end now
        os._exit(128 + signum)
    _received = signum
    raise Interrupted(signum)


def install() -> None:
    """From now on SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` (main thread only).

    A signal the process was started with ignored stays ignored (``nohup`` ignores SIGHUP; a
    shell's background job, SIGINT).
    """
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            if signal.getsignal(sig) != signal.SIG_IGN:
                signal.signal(sig, _handler)


@contextlib.contextmanager
def deferred():
    """Hold SIGINT, SIGTERM and SIGHUP off for the duration; one that arrived is delivered at the end.

    Works in the main thread (where Python runs signal handlers); elsewhere it does nothing,
    and a signal is handled by the main thread as usual.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: a C handler (Paddle's)
        if caught:
            signal.raise_signal(caught[0])


@contextlib.contextmanager
def ignoring_sigint():
    """SIGINT ignored while child processes are started: they inherit it, so a Ctrl-C in the terminal
    (which reaches the whole process group) is left to this process, which ends them itself."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if before is None else before)


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """In a child process: be sent ``sig`` when the parent ends (Linux ``PR_SET_PDEATHSIG``); end now if it
    already has. Elsewhere only the check is made."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (AttributeError, OSError):  # not Linux: no such call
        pass
    if os.getppid() != parent_pid:
        os._exit(1)
