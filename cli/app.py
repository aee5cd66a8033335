"""The ``compress`` command: a thin typer layer over the ``compress`` library.

Each command (one module each in :mod:`compress_cli.commands`) maps its flags to the
library's parameters, calls one library function, shows progress on stderr and prints
results on stdout (``--json`` for machines). This module builds the app, registers every
command in one place, and renders errors: a library error names a *parameter*
(``epochs``); here it is shown as the flag that sets it (``--epochs``).
"""
from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import warnings


def _end_quietly(signum, frame):  # while starting: nothing written yet, no child started
    sys.stderr.write(f"error: interrupted by {signal.Signals(signum).name} while starting\n")
    os._exit(128 + signum)


# The console script (not a test or a program importing the app): a signal while the heavy imports below run
# (seconds) ends it quietly; once they are done, the library's handlers take over (see compress.common.signals).
# Paddle's import installs a C++ handler of its own (it prints a C++ traceback on stdout), so the signals are also
# *blocked* until the imports are done: one that arrives meanwhile waits, and is delivered to _end_quietly when
# they are unblocked (threads that native libraries start during the imports inherit the block: the signal goes to
# this one).
CONSOLE_SCRIPT = os.path.basename(sys.argv[0] if sys.argv else "") == "compress"
_STARTING = [s for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
             if CONSOLE_SCRIPT and signal.getsignal(s) != signal.SIG_IGN]  # ignored from the start (nohup): stays so


def _quiet_while_starting(block: bool) -> None:
    for sig in _STARTING:
        signal.signal(sig, _end_quietly)
    if _STARTING:
        signal.pthread_sigmask(signal.SIG_BLOCK if block else signal.SIG_UNBLOCK, _STARTING)


_quiet_while_starting(block=True)

import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from rich.markup import escape  # noqa: E402

try:  # recent typer releases carry their own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError  # noqa: E402
except ImportError:  # pragma: no cover - typer on the click package
    from click.exceptions import ClickException, NoArgsIsHelpError  # noqa: E402

import compress  # noqa: E402
from compress.common import native, signals  # noqa: E402
from compress.model import trust  # noqa: E402
from compress.common.errors import CompressError  # noqa: E402

from .commands import COMMANDS, GROUPS  # noqa: E402
from .output import flag, stdout  # noqa: E402
from .progress import stderr  # noqa: E402

if CONSOLE_SCRIPT:
    _quiet_while_starting(block=False)  # ours again (Paddle's import replaced them); a signal that waited ends here
    signals.install()



class _Notes(logging.Handler):
    """The library's notes (the ``compress`` logger: e.g. a factory built with pretrained=False) as ``note:`` lines on
    whatever stderr is when they are written."""

    def emit(self, record):
        sys.stderr.write(f"note: {record.getMessage()}\n")


def _notes_on_stderr() -> None:
    log = logging.getLogger("compress")
    if not any(isinstance(h, _Notes) for h in log.handlers):
        log.addHandler(_Notes())
        log.setLevel(logging.INFO)
        log.propagate = False


_notes_on_stderr()


def error(message: str) -> None:
    """The one ``error:`` line of a failed command, on stderr."""
    stderr.print(f"[red]error:[/red] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)


class Group(TyperGroup):
    """Usage errors (a missing argument, an unknown flag or command, a bad value) as one ``error:`` line,
    exit code 2, like every other bad input (typer would draw a box of several lines)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                              **extra)
        except NoArgsIsHelpError as e:  # `compress` alone: the help (and exit code 2, no command was given)
            if not standalone_mode:
                raise
            if e.format_message().strip():  # typer's rich help printed itself while the error was made
                stdout.print(e.format_message(), highlight=False)
            sys.exit(e.exit_code)
        except ClickException as e:
            if not standalone_mode:
                raise
            ctx = getattr(e, "ctx", None)
            path = " ".join(["compress", *ctx.command_path.split()[1:]]) if ctx is not None else "compress"
            error(f"{e.format_message()} (see `{path} --help`)")
            sys.exit(e.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            error("aborted")
            sys.exit(1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(cls=Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Stochastic-depth block pruning for PaddlePaddle vision models.")


def friendly(fn):
    """Turn CompressError (and any other failure) into one line on stderr and a non-zero exit.

    After a signal, whatever error surfaces (a native library may wrap the interruption in one
    of its own) is the interruption: see :func:`run`.
    """
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        warnings.filterwarnings("ignore")
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, signals.Interrupted):
            raise
        except Exception as e:  # noqa: BLE001 - last line of defence: never a traceback
            if signals.received() is not None:
                raise signals.Interrupted(signals.received()) from None
            if isinstance(e, CompressError):
                error(e.render(flag))
                raise typer.Exit(e.exit_code)
            if os.environ.get(native.DEBUG_ENV):
                raise
            if isinstance(e, (MemoryError, RecursionError)):   # what an input asked for, not a bug of ours
                error(f"the input needs more {'memory' if isinstance(e, MemoryError) else 'nesting'} than this "
                      f"machine allows ({type(e).__name__}); nothing written")
                raise typer.Exit(2)
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            error(f"{type(e).__name__}: {msg} (set COMPRESS_DEBUG=1 for a traceback)")
            raise typer.Exit(1)
    return inner


def version_cb(value: bool):
    if value:
        stdout.print(f"compress {compress.__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=version_cb, is_eager=True,
                                      help="Print the version and exit."),
         trust_arch: bool = typer.Option(False, "--trust-arch",
                                         help="Trust the model code (a .py file, a factory function) that a "
                                              "sidecar names, and remember it. Weight files never run code.")):
    if trust_arch:
        os.environ[trust.TRUST_ENV] = "1"


for _name, _command in COMMANDS:
    app.command(_name)(friendly(_command))
for _name, _help, _commands in GROUPS:
    _group = typer.Typer(no_args_is_help=True, help=_help)
    for _sub, _command in _commands:
        _group.command(_sub)(friendly(_command))
    app.add_typer(_group, name=_name)


def run():
    """Console entry point. Native libraries (Paddle's C++ core, paddle2onnx) print to file
    descriptor 1; route that to stderr so stdout carries only results (and stays valid --json).

    A signal (SIGINT, SIGTERM, SIGHUP) ends the command through every clean-up on the way out
    (:mod:`compress.common.signals`); then one line, and the process ends at once with 128 + the signal
    number, without the interpreter's teardown (native libraries' threads can abort it).
    """
    native.route_stdout_to_stderr()
    signals.install()
    try:
        app()
    except signals.Interrupted as e:
        error(f"{e}; nothing unfinished was written")
        _flush()
        os._exit(e.exit_code)
    finally:
        sys.stdout.flush()
        # the command is over (its result printed, its exit code set): a signal now waits, unhandled, while the
        # interpreter tears down (which puts the default handlers back: it would end the process by the signal)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
