"""The ``compress`` command: a thin typer layer over the ``compress`` library.

Each command (one module each in :mod:`compress_cli.commands`) maps its flags to the
library's parameters, calls one library function, shows progress on stderr and prints
results on stdout (``--json`` for machines). This module builds the app, registers every
command in one place, and renders errors: a library error names a *parameter*
(``epochs``); here it is shown as the flag that sets it (``--epochs``).
"""
from __future__ import annotations

import functools
import os
import sys
import warnings

import typer

import compress
from compress import native, trust
from compress.errors import CompressError

from .commands import COMMANDS
from .output import flag, stdout
from .progress import stderr

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Stochastic-depth block pruning for PaddlePaddle vision models.")


def friendly(fn):
    """Turn CompressError (and any other failure) into one line on stderr and a non-zero exit."""
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        warnings.filterwarnings("ignore")
        try:
            return fn(*args, **kwargs)
        except CompressError as e:
            stderr.print(f"[red]error:[/red] {e.render(flag)}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - last line of defence: never a traceback
            if os.environ.get(native.DEBUG_ENV):
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            stderr.print(f"[red]error:[/red] {type(e).__name__}: {msg} (set COMPRESS_DEBUG=1 for a traceback)",
                         highlight=False, soft_wrap=True)
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


def run():
    """Console entry point. Native libraries (Paddle's C++ core, paddle2onnx) print to file
    descriptor 1; route that to stderr so stdout carries only results (and stays valid --json)."""
    native.route_stdout_to_stderr()
    try:
        app()
    finally:
        sys.stdout.flush()
