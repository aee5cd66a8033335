"""Atomic writes: a file or directory appears complete or not at all.

* :func:`atomic_path` / :func:`atomic_dir`: write into a hidden temporary file or directory
  next to the destination, flush it to disk, then rename it into place. A directory that
  already exists is swapped with the new one in one step (Linux ``renameat2`` with
  ``RENAME_EXCHANGE``, :func:`exchange`), so the old or the new one is complete at the path
  at every moment; where that call is missing, the old one is moved aside and back on failure.
* :func:`locked`: an exclusive lock on a directory, for writers that must not interleave.
* :func:`owned`: an output owned by one command from its start to its publish (a lock file next to it,
  naming the owner); a second writer is told who holds it; a dead owner's lock is free (``flock``).
* A failure to write (a full disk, a read-only place) is a :class:`CompressError` naming the
  path; nothing is left behind but the previous content.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import stat
import sys
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import CompressError
from .signals import deferred

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_error(path, e: OSError) -> CompressError:
    """A failed write as a one-line error (exit code 2): the disk is full, the place is read-only, ..."""
    where = f" ({e.filename})" if getattr(e, "filename", None) and str(e.filename) != str(path) else ""
    return CompressError(f"cannot write {path}: {e.strerror or e}{where}; nothing written")


def temp_name(path: Path, suffix: str = ".tmp") -> Path:
    """A new hidden name next to ``path`` (``.NAME.XXXXXXXX.tmp``); nothing is created."""
    return path.with_name(f".{path.name}.{os.urandom(4).hex()}{suffix}")


def write_hidden(path: Path, data: bytes) -> Path:
    """``data`` in a new hidden file next to ``path`` (:func:`temp_name`), flushed to disk, with ordinary
    permissions; on failure nothing is left."""
    tmp = temp_name(path)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        fsync_path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def fsync_path(path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(path) -> None:
    """Flush a directory's entries (the renames in it) to disk; best effort, after the fact."""
    with contextlib.suppress(OSError):
        fsync_path(path, directory=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; flush it and rename it over ``path`` on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        yield Path(tmp)
        fsync_path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise
    sync_dir(path.parent)


def _renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the system or the file system cannot (then nothing happened).
    """
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _remove(path: Path) -> None:
    """Remove a file, a symlink or a directory tree; best effort (used after the fact)."""
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            os.unlink(path)


def publish_dir(tmp: Path, path: Path) -> None:
    """Move the finished directory ``tmp`` to ``path``, replacing what is there in one step."""
    if not os.path.lexists(path):
        os.replace(tmp, path)
    elif exchange(tmp, path):
        _remove(tmp)  # now the old one
    else:  # no atomic swap here: move the old one aside, and back if the new one cannot go in
        aside = temp_name(path, ".old")
        with deferred():
            os.rename(path, aside)
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(aside, path)
                raise
        _remove(aside)
    sync_dir(path.parent)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, replace: bool = True):
    """Yield a temporary directory next to ``path``; move it to ``path`` on success (see :func:`publish_dir`).
    ``replace`` False: a ``path`` that appeared meanwhile is not replaced (a CompressError, nothing published)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise write_error(path, e) from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if not replace and os.path.lexists(path):
            raise CompressError(f"{path} appeared while this command was writing it (another process wrote it); it "
                                "was not replaced (`force` replaces it); nothing written", param="force")
        publish_dir(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise


@contextlib.contextmanager
def locked(directory: str | os.PathLike):
    """An exclusive lock on ``directory`` (``flock``) for the duration: writers in it take turns.

    Nothing is created; the lock goes with the process if it dies. Where directories cannot
    be locked (not POSIX), this does nothing.
    """
    try:
        import fcntl  # platform-specific: POSIX only
    except ImportError:
        yield
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as e:
        raise write_error(directory, e) from None
    try:
        with contextlib.suppress(OSError):  # a file system without locks: go on without
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


def _take(lock: Path):
    """An fd holding ``lock`` exclusively, or None if a live process holds it (a dead one's lock is free: the
    kernel released it). The file is the one at the path (not one unlinked by a finishing owner meanwhile)."""
    import fcntl  # platform-specific: POSIX only

    for _ in range(20):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    return None


def command_line() -> str:
    """This process's command line, shortened, for an owner's lock."""
    args = [os.path.basename(sys.argv[0]) if sys.argv else "python", *sys.argv[1:]]
    text = " ".join(args)
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def owned(path: str | os.PathLike, command: str | None = None):
    """Own the output ``path`` for the ``with`` block: another command writing the same output meanwhile is
    refused (exit code 2) with the owner's pid and command line. The lock file (``.NAME.lock`` next to ``path``)
    is removed at the end; one a dead process left is taken over."""
    path = Path(path)
    lock = _lock_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _take(lock)
    except ImportError:   # no flock here (not POSIX): no ownership, as before
        yield
        return
    except OSError as e:
        raise write_error(lock, e) from None
    if fd is None:
        try:
            owner = lock.read_text().strip() or "another process"
        except OSError:
            owner = "another process"
        raise CompressError(f"{path} is being written by {owner}, which is still running; wait for it to finish or "
                            "write elsewhere (`out`)", param="out")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({command or command_line()})".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def what_is(path: str | os.PathLike) -> str:
    """What a path that is not a regular file is, for messages: 'a directory', 'a FIFO (named pipe)', 'a character
    device', 'a broken symbolic link', 'missing'..."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if p.is_symlink() else "missing"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")]
    return next((what for test, what in kinds if test(mode)), "not a regular file")


def not_a_file(path: str | os.PathLike, what: str = "file") -> CompressError:
    """The one line for a path that should be a regular file: 'no such file', or what it is instead."""
    kind = what_is(path)
    if kind == "missing":
        return CompressError(f"{path}: no such {what}")
    via = " (through a symbolic link)" if Path(path).is_symlink() and kind != "a broken symbolic link" else ""
    return CompressError(f"{path}: not a {what}: it is {kind}{via}")


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(o):
    """``json.dumps(default=...)`` for numpy scalars and arrays and paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
