"""Checkpoints: plain data only, written atomically, loaded with weights_only=True.

A checkpoint is ``{"state_dict", "metadata", "sha256"[, "training_state"]}``; the metadata is
``ArtifactMetadata.to_dict()`` (train/metadata.py, the one schema every artifact shares).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .model import FusionConfig, MicroGestureNet
from .metadata import ArtifactMetadata, MetadataError, Preprocessing


class CheckpointError(MetadataError):
    """A file that is not a usable mgr checkpoint."""


def build_metadata(cfg: FusionConfig, class_names: list[str], preprocessing: Preprocessing,
                   train_config: dict | None = None, metrics: dict | None = None,
                   clip_seconds: float | None = None) -> ArtifactMetadata:
    """The self-description every artifact (checkpoint, ONNX, engine) carries."""
    if preprocessing.num_frames != cfg.num_frames:
        raise ValueError(f"preprocessing takes {preprocessing.num_frames} frames, the model {cfg.num_frames}")
    return ArtifactMetadata(modality=cfg.modality, class_names=tuple(class_names), preprocessing=preprocessing,
                            model_config=cfg.to_dict(), train_config=dict(train_config or {}),
                            metrics=dict(metrics or {}), clip_seconds=clip_seconds)


def state_checksum(state_dict: dict) -> str:
    """sha256 over names and raw bytes of every tensor: torch's zip reader does not verify data."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous().reshape(-1)
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, model: MicroGestureNet, metadata: ArtifactMetadata,
                    training_state: dict | None = None) -> Path:
    """Write ``{"state_dict", "metadata", "training_state"}`` atomically (metadata as plain data)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {"state_dict": state, "metadata": metadata.to_dict(), "sha256": state_checksum(state)}
    if training_state is not None:
        payload["training_state"] = training_state
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file as plain data; ``payload["metadata"]`` comes back as checked
    ``ArtifactMetadata`` (format 1 migrated). Never executes code from the file."""
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
    try:
        payload["metadata"] = ArtifactMetadata.from_dict(payload["metadata"], str(path))
    except MetadataError as e:
        raise CheckpointError(str(e)) from e
    if payload.get("sha256") and state_checksum(payload["state_dict"]) != payload["sha256"]:
        raise CheckpointError(f"{path}: corrupt: the weights do not match their stored sha256 checksum")
    return payload


def load_model(path: str | os.PathLike) -> tuple[MicroGestureNet, ArtifactMetadata]:
    """Build the model a checkpoint describes and load its weights (eval mode)."""
    payload = read_checkpoint(path)
    meta = payload["metadata"]
    try:
        cfg = FusionConfig.from_dict(meta.model_config)
        model = MicroGestureNet(cfg)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: weights do not match the model its metadata describes: {e}") from e
    model.eval()
    return model, meta
