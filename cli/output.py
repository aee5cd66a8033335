"""Where commands print: results on stdout (``--json`` for machines), logs and progress on stderr."""
from __future__ import annotations

import json
import sys

from rich.console import Console

from compress.fileio import json_default

stdout = Console(highlight=False, width=None if sys.stdout.isatty() else 180)


def emit_json(obj) -> None:
    """Print ``obj`` as JSON, the only thing on stdout (a record's ``to_json()`` if it has one)."""
    if hasattr(obj, "to_json"):
        obj = obj.to_json()
    sys.stdout.write(json.dumps(obj, indent=2, default=json_default) + "\n")


def fmt(v, spec=".4f") -> str:
    """A number for a table cell; "-" for unknown."""
    return "-" if v is None else format(v, spec)
