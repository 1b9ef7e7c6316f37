"""Atomic file writes: a reader sees the old file or the whole new one, never a half file.

Every file mgr writes in one go goes through :func:`atomic_write`: the content goes to a
temporary file in the target's folder (a name unique to this process and call), which is
flushed to disk, given the usual mode (0666 less the umask, as ``open()`` would), renamed
over the target with ``os.replace``, and the folder is flushed too where the OS allows it.
On any failure, Ctrl-C included, the temporary file is removed and the old target is left
as it was. Streaming writers that must name their own temporary file (the annotated video)
finish with :func:`durable_replace`, the same rename step.

Standard library only: the torch-free CLI paths import this.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "durable_replace"]

_FILE_MODE = 0o666          # the mode open() asks for; the kernel applies the umask


def _create_temp(path: Path, suffix: str) -> Path:
    """Create an empty temporary file next to ``path``, like mkstemp but with the usual mode.

    ``os.open(..., O_EXCL, 0o666)`` lets the kernel apply the umask, so the mode is right
    without reading the umask (``os.umask`` is process-wide: setting and restoring it races
    with other threads).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")
        try:
            fd = os.open(tmp, flags, _FILE_MODE)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{path}: could not create a unique temporary file next to it")


def _fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)   # Windows flushes writable handles only
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable; a no-op where the OS or file system does not allow it."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def durable_replace(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Flush ``tmp`` to disk, rename it over ``path`` and flush the folder: the commit step."""
    path = Path(path)
    _fsync_file(tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def atomic_write(path: str | os.PathLike, write_fn: Callable[[str], Any], *, suffix: str = ".tmp") -> Path:
    """Call ``write_fn(tmp_path)`` on a temporary file next to ``path``, then commit it as ``path``.

    ``write_fn`` gets the temporary path as a ``str`` (it exists, empty) and writes the whole
    content there. ``suffix`` ends the temporary name, for writers that choose a format by
    extension (OpenCV: ``suffix=".tmp.mp4"``). Creates the parent folder. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path, suffix)
    try:
        write_fn(str(tmp))
        durable_replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` (bytes or any bytes-like object) to ``path`` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    data = text.encode(encoding)        # encode first: an unencodable text leaves nothing behind
    return atomic_write_bytes(path, data)


def atomic_write_json(path: str | os.PathLike, obj: Any, **json_kwargs: Any) -> Path:
    """Write ``json.dumps(obj, **json_kwargs)`` to ``path`` atomically (UTF-8)."""
    return atomic_write_text(path, json.dumps(obj, **json_kwargs))
