"""Find the MediaPipe pose model file (README "The pose model").

Order: ``--pose-model PATH``, then ``MGR_POSE_MODEL``, then the user cache
(``<mgr home>/pose_landmarker_full.task``), filled on first use by a download of the
official file, checked against its pinned sha256. Offline, the error names options 1 and 2.
"""
from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from mgr.train.atomic import atomic_write
from mgr.train.registry import mgr_home

log = logging.getLogger(__name__)

ENV_VAR = "MGR_POSE_MODEL"
MODEL_URL = ("https://storage.googleapis.com/mediapipe-models/pose_landmarker/"
             "pose_landmarker_full/float16/1/pose_landmarker_full.task")
MODEL_SHA256 = "5134a3aad27a58b93da0088d431f366da362b44e3ccfbe3462b3827a839011b1"
MODEL_BYTES = 9_398_198
CACHE_NAME = "pose_landmarker_full.task"


class PoseModelError(RuntimeError):
    """No usable pose model: not given, not cached, and the download failed or mismatched."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_model_path() -> Path:
    return mgr_home() / CACHE_NAME


def _explicit(path: str | os.PathLike, origin: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise PoseModelError(f"pose model from {origin} not found: {p}")
    return p


def resolve_pose_model(cli_path: str | os.PathLike | None = None, allow_download: bool = True,
                       url: str = MODEL_URL, sha256: str = MODEL_SHA256) -> Path:
    """The pose model to use, by the documented lookup order."""
    if cli_path:
        return _explicit(cli_path, "--pose-model")
    env = os.environ.get(ENV_VAR)
    if env:
        return _explicit(env, ENV_VAR)
    cached = cached_model_path()
    if cached.is_file():
        if sha256_of(cached) == sha256:
            return cached
        log.warning("cached pose model %s fails its checksum; downloading it again", cached)
    if not allow_download:
        raise PoseModelError(_offline_message(cached, "downloads are disabled"))
    return download_model(cached, url, sha256)


def _offline_message(cached: Path, reason: str) -> str:
    return (f"no pose model: {reason}. Give one with --pose-model PATH or the environment "
            f"variable {ENV_VAR}=PATH (a MediaPipe pose_landmarker .task file), or connect to "
            f"the internet once so mgr can cache it at {cached} (from {MODEL_URL}).")


def download_model(dest: Path, url: str = MODEL_URL, sha256: str = MODEL_SHA256,
                   timeout_s: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` atomically, accepting it only if its sha256 matches."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading the pose model from %s", url)

    def fetch(tmp: str) -> None:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
        got = sha256_of(Path(tmp))
        if got != sha256:
            raise PoseModelError(f"downloaded pose model has sha256 {got}, expected {sha256}; "
                                 f"not used. Give a model with --pose-model or {ENV_VAR}.")
    try:
        return atomic_write(dest, fetch, suffix=".part")
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise PoseModelError(_offline_message(dest, f"download failed ({e})")) from e
