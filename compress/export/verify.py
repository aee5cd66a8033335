"""Verifying an export directory before it is used: is every file the one ``export.json`` lists (size and
sha256), is nothing else there, and is the export of the model it is used for?

``export.json`` records the size and sha256 of every file it wrote and the sha256 of the
source weights. ``compress report`` and ``sweep`` reuse a cached export only when
:func:`verify_export` finds nothing wrong, and check it again (:func:`check_export`) just
before timing, so a file that is not the named model's export is never timed.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..common.errors import CompressError
from ..common.fileio import sha256
from ..runtimes.layout import EXPORT_JSON


def _listed(export_dir: Path) -> tuple[dict | None, str | None]:
    """(export.json, None), or (None, what is wrong with it)."""
    try:
        info = json.loads((export_dir / EXPORT_JSON).read_text())
    except FileNotFoundError:
        return None, f"no {EXPORT_JSON} (not an export)"
    except (OSError, ValueError) as e:
        return None, f"{EXPORT_JSON} is unreadable ({e})"
    if not isinstance(info, dict) or not isinstance(info.get("files"), dict) or not info["files"]:
        return None, f"{EXPORT_JSON} lists no files"
    return info, None


def _file_problem(export_dir: Path, rel: str, want) -> str | None:
    path = export_dir / rel
    if not path.is_file():
        return f"{rel} is missing"
    if not isinstance(want, dict):
        return f"{EXPORT_JSON} has no size and sha256 for {rel}"
    size, digest = path.stat().st_size, sha256(path)
    if size != want.get("bytes") or digest != want.get("sha256"):
        return (f"{rel} is not the file exported (sha256 {digest[:12]}, {size} bytes; {EXPORT_JSON} says "
                f"{str(want.get('sha256'))[:12]}, {want.get('bytes')} bytes)")
    return None


def verify_export(export_dir, model=None) -> list[str]:
    """What is wrong with ``export_dir`` (empty: nothing). ``model``: the weights file it must be an export of."""
    export_dir = Path(export_dir)
    info, problem = _listed(export_dir)
    if info is None:
        return [problem]
    problems = []
    if model is not None:
        want = (info.get("source") or {}).get("sha256")
        if want != sha256(model):
            problems.append(f"{EXPORT_JSON} names another model (source sha256 {str(want)[:12]}), not {model}")
    for rel, want in sorted(info["files"].items()):
        if (p := _file_problem(export_dir, rel, want)) is not None:
            problems.append(p)
    present = sorted(p.relative_to(export_dir).as_posix() for p in export_dir.rglob("*") if not p.is_dir())
    problems += [f"{rel} is not listed in {EXPORT_JSON}" for rel in present
                 if rel != EXPORT_JSON and rel not in info["files"]]
    return problems


def check_export(export_dir, model=None) -> dict:
    """``export.json`` of a verified export; a CompressError (exit code 2) naming what is wrong otherwise."""
    problems = verify_export(export_dir, model)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CompressError(f"{export_dir}: {problems[0]}{more}; refusing to use this export (delete it, or run "
                            "the command again to export anew)")
    return json.loads((Path(export_dir) / EXPORT_JSON).read_text())
