"""Checkpoints: plain data only, written atomically, loaded with weights_only=True.

DESIGN.md section 2: the state_dict plus metadata (class names, modality, T, reference
frame size, keypoint statistics, model and training config, metrics, format version).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from .model import FusionConfig, MicroGestureNet
from .preprocess import KeypointStats

FORMAT_VERSION = 1
FORMAT_NAME = "mgr-checkpoint"


class CheckpointError(ValueError):
    """A file that is not a usable mgr checkpoint."""


def atomic_write_bytes(path: str | os.PathLike, write_fn) -> Path:
    """Call ``write_fn(tmp_path)`` then rename into place, so a crash never leaves a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)       # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def build_metadata(cfg: FusionConfig, class_names: list[str], reference_size: tuple[int, int],
                   keypoint_stats: KeypointStats, train_config: dict | None = None,
                   metrics: dict | None = None, clip_seconds: float | None = None) -> dict:
    """The self-description every artifact (checkpoint, ONNX, engine) carries, as plain data."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "modality": cfg.modality,
        "num_frames": cfg.num_frames,
        "class_names": list(class_names),
        "reference_size": [int(reference_size[0]), int(reference_size[1])],
        "keypoint_stats": keypoint_stats.to_dict(),
        "model_config": cfg.to_dict(),
        "train_config": dict(train_config or {}),
        "metrics": dict(metrics or {}),
        # median clip duration of the training data, seconds; the live window default
        "clip_seconds": clip_seconds,
    }


def state_checksum(state_dict: dict) -> str:
    """sha256 over names and raw bytes of every tensor: torch's zip reader does not verify data."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous().reshape(-1)
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, model: MicroGestureNet, metadata: dict,
                    training_state: dict | None = None) -> Path:
    """Write ``{"state_dict", "metadata", "training_state"}`` atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {"state_dict": state, "metadata": metadata, "sha256": state_checksum(state)}
    if training_state is not None:
        payload["training_state"] = training_state
    return atomic_write_bytes(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file as plain data. Never executes code from the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated, corrupt, or not a torch.save file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused to load: the file holds objects other than plain data "
                              f"(tensors, numbers, strings, lists, dicts). It may run code; not loaded. ({e})") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {e}") from e
    if not isinstance(payload, dict) or "state_dict" not in payload or "metadata" not in payload:
        raise CheckpointError(f"{path}: not an mgr checkpoint (no state_dict/metadata)")
    meta = payload["metadata"]
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not an mgr checkpoint (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if payload.get("sha256") and state_checksum(payload["state_dict"]) != payload["sha256"]:
        raise CheckpointError(f"{path}: corrupt: the weights do not match their stored sha256 checksum")
    if int(meta.get("format_version", -1)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {meta['format_version']} is newer than this mgr "
                              f"(reads up to {FORMAT_VERSION}); upgrade mgr")
    return payload


def load_model(path: str | os.PathLike) -> tuple[MicroGestureNet, dict]:
    """Build the model a checkpoint describes and load its weights (eval mode)."""
    payload = read_checkpoint(path)
    meta = payload["metadata"]
    try:
        cfg = FusionConfig.from_dict(meta["model_config"])
        model = MicroGestureNet(cfg)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: weights do not match the model its metadata describes: {e}") from e
    model.eval()
    return model, meta
