"""Where commands print: results on stdout (``--json`` for machines), logs and progress on stderr."""
from __future__ import annotations

import json
import re
import sys

from rich.console import Console

from compress.common.fileio import json_default

# Library parameters whose flag is not simply --name-with-dashes.
FLAGS = {
    "out_dir": "--out",
    "export_dir": "--export",
    "keeps": "--keep",
    "batch_sizes": "--batch",
    "min_runs": "--runs",
    "max_seconds": "--seconds",
    "formats": "--format",
    "int8_force": "--int8-force",
}


def flag(param: str) -> str:
    """The flag that sets a library parameter."""
    return FLAGS.get(param, "--" + param.replace("_", "-"))


def with_flags(text: str) -> str:
    """A library message with each parameter marked ```name``` shown as its flag."""
    return re.sub(r"`([a-z_][a-z0-9_]*)`", lambda m: flag(m.group(1)), text)


stdout = Console(highlight=False, width=None if sys.stdout.isatty() else 180)


def emit_json(obj) -> None:
    """Print ``obj`` as JSON, the only thing on stdout (a record's ``to_json()`` if it has one)."""
    if hasattr(obj, "to_json"):
        obj = obj.to_json()
    sys.stdout.write(json.dumps(obj, indent=2, default=json_default) + "\n")


def fmt(v, spec=".4f") -> str:
    """A number for a table cell; "-" for unknown."""
    return "-" if v is None else format(v, spec)
