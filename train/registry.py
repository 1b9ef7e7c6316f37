"""Where mgr keeps user-level state: the cache folder and the newest model it made.

``MGR_HOME`` overrides the folder (default ``~/.cache/mgr``). ``mgr train`` and ``mgr
demo`` record each model they write, so ``mgr live`` without ``--model`` can use the
newest one and say which.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .atomic import atomic_write_json


def mgr_home() -> Path:
    return Path(os.environ.get("MGR_HOME") or Path.home() / ".cache" / "mgr")


def _latest_file() -> Path:
    return mgr_home() / "latest_model.json"


def record_model(path: str | os.PathLike, kind: str) -> None:
    """Remember ``path`` as the newest model (``kind``: "train", "demo", "export", ...)."""
    f = _latest_file()
    atomic_write_json(f, {"path": str(Path(path).resolve()), "kind": kind, "time": time.time()})


def latest_model() -> Path | None:
    """The newest recorded model that still exists, or None."""
    try:
        rec = json.loads(_latest_file().read_text())
    except (OSError, json.JSONDecodeError):
        return None
    p = Path(rec.get("path", ""))
    return p if p.is_file() else None
