"""Shared CLI test helpers."""
from typer.testing import CliRunner

from compress_cli.app import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(res, code=2):
    """The command failed with ``code``, no traceback, and its last stderr line is its only ``error:`` line."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr
    return errors[0]
