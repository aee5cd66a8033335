"""Native libraries' output and logging: the one place that deals with them.

Paddle's C++ core, paddle2onnx, polygraphy and onnxruntime print to file descriptor 1
and log freely. ``compress`` keeps stdout for results (``--json`` must stay valid JSON)
and progress on stderr, so:

* :func:`quiet_environment` sets the log-silencing environment before paddle is
  imported (``import compress`` calls it first);
* :func:`route_stdout_to_stderr` (the CLI's entry point) sends file descriptor 1 to
  stderr for the whole run and gives Python a private handle on the real stdout;
* :func:`capture_stdout` captures fd 1 for one call (a library user's stdout stays clean
  too), keeping the text for error messages;
* :func:`quiet_logging` mutes Python logging chatter (onnxruntime's quantizer);
* :func:`no_runtime_installs` keeps polygraphy from pip-installing anything at run time.
"""
from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import sys
import tempfile
import warnings

DEBUG_ENV = "COMPRESS_DEBUG"   # set: native chatter goes to stderr instead of being captured
_AUTOINSTALL_ENV = "POLYGRAPHY_AUTOINSTALL_DEPS"


def quiet_environment() -> None:
    """Logging settings that must be in place before paddle is imported."""
    # paddle warns on import that ccache (a C++ build cache) is missing; irrelevant here.
    warnings.filterwarnings("ignore", message="No ccache found")
    # Paddle's C++ logging (glog) is chatty on stderr; keep warnings and errors only.
    os.environ.setdefault("GLOG_minloglevel", "2")
    # paddle2onnx's constant folding must never pip-install anything at run time.
    os.environ.setdefault(_AUTOINSTALL_ENV, "0")


def flush_c_stdout() -> None:
    """Flush Python's and the C library's stdout buffers (before file descriptor 1 is moved)."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    try:
        ctypes.CDLL(None).fflush(None)
    except Exception:  # noqa: BLE001 - no C library to flush (e.g. on an unusual platform)
        pass


def route_stdout_to_stderr() -> None:
    """For a whole CLI run: file descriptor 1 goes to stderr; ``sys.stdout`` writes the real stdout.

    Native libraries print on fd 1; after this only what Python writes to ``sys.stdout``
    (the results) reaches the real stdout.
    """
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(os.fdopen(real_stdout, "wb"), line_buffering=True)


class _Captured:
    def __init__(self, f):
        self._f = f

    def text(self) -> str:
        if self._f is None:
            return ""
        try:
            self._f.flush()
            self._f.seek(0)
            return self._f.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""


class _TextSink:
    """A text stream writing into a binary file (for Python-level ``print`` while capturing)."""

    def __init__(self, f):
        self._f = f

    def write(self, s):
        self._f.write(s.encode("utf-8", "replace"))
        return len(s)

    def flush(self):
        with contextlib.suppress(OSError, ValueError):
            self._f.flush()

    def isatty(self):
        return False


@contextlib.contextmanager
def _fd_to(fd: int, target: int):
    """File descriptor ``fd`` points at ``target`` for the duration (C/C++ writes included)."""
    flush_c_stdout()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(fd)
    except OSError:
        saved = None
    if saved is not None:
        os.dup2(target, fd)
    try:
        yield
    finally:
        flush_c_stdout()
        if saved is not None:
            os.dup2(saved, fd)
            os.close(saved)


@contextlib.contextmanager
def capture_stdout():
    """Capture everything written to stdout (Python and C/C++ alike) for the duration.

    paddle2onnx, polygraphy and Paddle's C++ code print chatter on file descriptor 1;
    ``--json`` output must be the only thing on stdout, and a progress bar on stderr
    should not be interleaved with it. The text is kept for error messages
    (``.text()``); with ``COMPRESS_DEBUG`` set it goes to stderr instead.
    """
    f = None if os.environ.get(DEBUG_ENV) else tempfile.TemporaryFile()
    with _fd_to(1, 2 if f is None else f.fileno()):
        try:
            with contextlib.redirect_stdout(sys.stderr if f is None else _TextSink(f)):
                yield _Captured(f)
        finally:
            if f is not None:
                f.close()


@contextlib.contextmanager
def capture_stderr():
    """Keep native chatter on file descriptor 2 (e.g. oneDNN's INT8 passes, which print their progress
    there when a predictor is built) out of the terminal for the duration, unless ``COMPRESS_DEBUG``.
    Python exceptions are unaffected."""
    if os.environ.get(DEBUG_ENV):
        yield
        return
    with tempfile.TemporaryFile() as f, _fd_to(2, f.fileno()):
        yield


@contextlib.contextmanager
def quiet_logging(level: int = logging.WARNING):
    """Mute Python logging at ``level`` (WARNING) and below, e.g. onnxruntime's quantizer chatter."""
    before = logging.root.manager.disable
    logging.disable(level)
    try:
        yield
    finally:
        logging.disable(before)


@contextlib.contextmanager
def no_runtime_installs():
    """Keep polygraphy (paddle2onnx's constant folding) from pip-installing packages at run time.

    paddle2onnx 2.1.0 sets ``os.environ["POLYGRAPHY_AUTOINSTALL_DEPS"] = "1"`` itself just before its
    polygraphy constant folding. polygraphy reads the variable once, at import: import it first (with
    our "0") and pin its flag off; the variable is restored afterwards.
    """
    try:
        import polygraphy.config  # optional: paddle2onnx skips folding (with a warning) without it

        polygraphy.config.AUTOINSTALL_DEPS = False
    except ImportError:
        pass
    before = os.environ.get(_AUTOINSTALL_ENV)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_AUTOINSTALL_ENV, None)
        else:
            os.environ[_AUTOINSTALL_ENV] = before
