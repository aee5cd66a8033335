"""Which model code a sidecar may make compress run.

A sidecar is a JSON file that travels with a model, so it is untrusted input: what
it names as the architecture is imported and called. The rule:

* a shipped architecture (``resnet_tiny``, ``vit_tiny``) always loads;
* Paddle's own model zoo (``paddle.vision.models:<factory>``) loads: it is part of paddle;
* a ``module:Class`` loads when ``module`` is installed (found on ``sys.path`` outside the
  current directory and the model's directory, and not in the standard library) and
  ``Class`` is a ``paddle.nn.Layer`` subclass: importing an installed package is what
  the user already trusts, and nothing is called before the class check;
* anything else (a ``.py`` file, a factory function, a module next to the model) loads
  only if the user trusted it: by naming it themselves with ``--arch`` (remembered in a
  per-user list, like SSH's ``known_hosts``; a ``.py`` file is remembered with its
  sha256, so an edited file must be trusted again) or with ``--trust-arch`` for this
  run (which is remembered too). The sidecar itself never grants trust.

Nothing here imports a module the rule refuses.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.util
import inspect
import json
import os
import sys
from pathlib import Path

import paddle
import paddle.vision.models as zoo

from ..common.errors import CompressError
from ..common.fileio import sha256, write_json

TRUST_ENV = "COMPRESS_TRUST_ARCH"      # "1": trust what the sidecar names, for this run (set by --trust-arch)
CONFIG_ENV = "COMPRESS_CONFIG_DIR"     # where the trusted list lives (default: $XDG_CONFIG_HOME/compress)
TRUSTED_FORMAT = "compress-trusted-archs/1"
PADDLE_ZOO = "paddle.vision.models"    # Paddle's own factories: as trusted as paddle itself


def config_dir() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "compress"


def trusted_file() -> Path:
    return config_dir() / "trusted_archs.json"


def trust_flag() -> bool:
    """The user's opt-in for this run (``compress --trust-arch`` or COMPRESS_TRUST_ARCH=1)."""
    return os.environ.get(TRUST_ENV, "") not in ("", "0")


def split_spec(spec: str) -> tuple[str, str]:
    target, _, name = spec.rpartition(":")
    return target, name


def is_file_spec(spec: str) -> bool:
    return split_spec(spec)[0].endswith(".py")


def _key(spec: str) -> tuple[str, str | None]:
    """(the key a spec is remembered under, the sha256 of its .py file or None)."""
    target, name = split_spec(spec)
    if target.endswith(".py"):
        path = Path(target).resolve()
        return f"{path}:{name}", (sha256(path) if path.is_file() else None)
    return spec, None


def _read_store() -> dict:
    try:
        data = json.loads(trusted_file().read_text())
    except (OSError, ValueError):
        return {}
    archs = data.get("archs") if isinstance(data, dict) else None
    return archs if isinstance(archs, dict) else {}


def remember(spec: str) -> bool:
    """Add ``spec`` to the user's trusted list (a ``.py`` file with its current sha256).

    Returns True if the list changed. Failing to write it is not an error: trust then
    lasts for this run only.
    """
    key, digest = _key(spec)
    entry = {"spec": spec, "sha256": digest, "added": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    path = trusted_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "a") as lock:
            with contextlib.suppress(ImportError, OSError):
                import fcntl  # POSIX only: elsewhere the list is written without a lock

                fcntl.flock(lock, fcntl.LOCK_EX)
            archs = _read_store()
            old = archs.get(key)
            if old is not None and old.get("sha256") == digest:
                return False
            archs[key] = entry
            write_json(path, {"format": TRUSTED_FORMAT, "archs": archs})
        return True
    except (OSError, CompressError):
        return False


def remembered(spec: str) -> str | None:
    """None if ``spec`` is on the trusted list (with the same file content); else why not."""
    key, digest = _key(spec)
    entry = _read_store().get(key)
    if entry is None:
        return "not on your trusted list"
    if entry.get("sha256") != digest:
        return f"{split_spec(spec)[0]} changed since you trusted it"
    return None


def _excluded_dirs(near: Path | None) -> set[Path]:
    out = {Path.cwd().resolve()}
    if near is not None:
        out.add(Path(near).resolve())
    return out


def _installed(module: str, near: Path | None) -> str | None:
    """None if ``module`` is an installed, non-stdlib module; else why not. Imports nothing:
    only the top-level name is looked up (a dotted lookup would import the parents)."""
    top = module.split(".")[0]
    if top in getattr(sys, "stdlib_module_names", ()) or top in sys.builtin_module_names:
        return f"{top} is a standard-library module"
    if top in sys.modules:
        origin = getattr(sys.modules[top], "__file__", None)
    else:
        try:
            found = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            found = None
        if found is None:
            return f"no installed module {top}"
        origin = found.origin if found.origin not in (None, "namespace") else \
            next(iter(found.submodule_search_locations or []), None)
    if origin is None:
        return f"{top} has no file"
    where = Path(origin).resolve()
    if where.name == "__init__.py" or where.is_file():
        where = where.parent
    if where.name == top:  # a package: its location is the folder holding it
        where = where.parent
    if where in _excluded_dirs(near):
        return f"{top} is not installed (it lies in {where}, the current or the model's directory)"
    return None


def check_sidecar_arch(spec: str, kwargs: dict | None, near: Path | None = None) -> str:
    """Decide whether the architecture a sidecar names may be imported; raise CompressError if not.

    Returns how it was allowed: ``flag``, ``remembered``, ``paddle-zoo`` or ``layer-class``
    (the caller must then check the imported object with :func:`check_imported` before calling it).
    """
    target, name = split_spec(spec)
    if trust_flag():
        if remember(spec):
            print(f"compress: {spec} is now on your trusted list ({trusted_file()})", file=sys.stderr)
        return "flag"
    why = remembered(spec)
    if why is None:
        return "remembered"
    if not target.endswith(".py"):
        if target == PADDLE_ZOO and "." not in name:
            return "paddle-zoo"
        not_installed = _installed(target, near)
        if not_installed is None and "." not in name:
            return "layer-class"
        why = not_installed or why
    raise CompressError(
        f"the sidecar names {spec} ({why}); importing it runs its code. A sidecar alone may name a shipped "
        "architecture, paddle.vision.models, or a paddle.nn.Layer class of an installed package. If you trust it, "
        "run `compress --trust-arch ...` once (it is then remembered), or name it yourself with --arch")


def check_imported(spec: str, how: str, obj) -> None:
    """Check the object a sidecar names before anything calls it: an entry of Paddle's zoo
    (``paddle-zoo``), or a ``paddle.nn.Layer`` subclass (``layer-class``)."""
    if how == "paddle-zoo":
        if split_spec(spec)[1] not in zoo.__all__:
            raise CompressError(f"the sidecar names {spec}, which is not one of paddle.vision.models' models")
    elif how == "layer-class" and not (inspect.isclass(obj) and issubclass(obj, paddle.nn.Layer)):
        raise CompressError(
            f"the sidecar names {spec}, which is not a paddle.nn.Layer class; calling it could run anything. "
            "If you trust it, run `compress --trust-arch ...` once, or name it yourself with --arch")


def remember_if_needed(spec: str) -> None:
    """The user named ``spec``: remember it if a sidecar could not name it alone."""
    target, name = split_spec(spec)
    if not target.endswith(".py") and target == PADDLE_ZOO:
        return
    if not target.endswith(".py") and "." not in name and _installed(target, None) is None:
        obj = sys.modules.get(target)
        obj = getattr(obj, name, None) if obj is not None else None
        if inspect.isclass(obj) and issubclass(obj, paddle.nn.Layer):
            return  # an installed Layer class: loads from a sidecar without being remembered
    remember(spec)
