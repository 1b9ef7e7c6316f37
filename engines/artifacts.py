"""What an exported artifact is on disk: file naming, graph I/O contract, metadata checks.

One export writes a *set* of graphs beside each other (README "Architecture", live feature caching):

    model.onnx           whole-clip graph: rgb and/or skeleton -> logits (for tools that want one file)
    model.encoder.onnx   frame encoder: one RGB frame -> 512-d feature (absent for skeleton-only models)
    model.head.onnx      clip head: T cached features and/or the T-frame skeleton -> logits

TensorRT engines follow the same pattern with ``.engine`` (plus a ``<file>.json`` sidecar
per engine). Every file names its siblings in its metadata, so a backend opened on any of
the three finds the others.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mgr.train.metadata import ArtifactMetadata, MetadataError

ROLES = ("clip", "encoder", "head")
RUNTIME_SUFFIXES = {".pt": "torch", ".onnx": "onnxruntime", ".engine": "tensorrt"}
BATCH_MODES = ("1", "dynamic")
DYNAMIC_BATCH = "batch"          # name of the dynamic batch axis in exported graphs
FEATURE_DIM = 512                # ResNet18 frame feature width
SKELETON_CHANNELS, NUM_JOINTS = 3, 25


class ArtifactError(MetadataError):
    """A file that is not a usable mgr artifact (wrong format, no metadata, bad shapes)."""


def runtime_for(path: str | os.PathLike) -> str:
    """The runtime that opens ``path``, chosen by suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in RUNTIME_SUFFIXES:
        valid = ", ".join(f"{s} ({r})" for s, r in RUNTIME_SUFFIXES.items())
        raise ValueError(f"{path}: unknown model suffix {suffix or '(none)'!r}; valid suffixes: {valid}")
    return RUNTIME_SUFFIXES[suffix]


@dataclass(frozen=True)
class ArtifactSet:
    clip: Path               # whole-clip graph, the path the user names
    encoder: Path | None     # frame encoder graph; None when the model has no RGB stream
    head: Path               # clip head graph

    def files(self) -> list[Path]:
        return [p for p in (self.encoder, self.head, self.clip) if p is not None]

    def names(self) -> dict[str, str | None]:
        """Sibling file names (no folders), as stored in each graph's metadata."""
        return {"clip": self.clip.name, "encoder": self.encoder.name if self.encoder else None,
                "head": self.head.name}


def base_path(path: str | os.PathLike) -> Path:
    """``model.encoder.onnx`` / ``model.head.onnx`` / ``model.onnx`` -> ``model.onnx``."""
    path = Path(path)
    stem, suffix = path.name[:-len(path.suffix)], path.suffix
    for role in ("encoder", "head"):
        if stem.endswith(f".{role}"):
            return path.with_name(stem[:-len(role) - 1] + suffix)
    return path


def artifact_set(path: str | os.PathLike, uses_rgb: bool) -> ArtifactSet:
    """The file names one export writes for an ``--out`` of ``path``."""
    clip = base_path(path)
    stem, suffix = clip.name[:-len(clip.suffix)], clip.suffix
    encoder = clip.with_name(f"{stem}.encoder{suffix}") if uses_rgb else None
    return ArtifactSet(clip=clip, encoder=encoder, head=clip.with_name(f"{stem}.head{suffix}"))


def siblings_from_names(path: str | os.PathLike, names: dict) -> ArtifactSet:
    """Rebuild an ArtifactSet from the sibling names stored in one graph's metadata."""
    folder = Path(path).parent
    try:
        return ArtifactSet(clip=folder / names["clip"],
                           encoder=folder / names["encoder"] if names.get("encoder") else None,
                           head=folder / names["head"])
    except (KeyError, TypeError) as e:
        raise ArtifactError(f"{path}: metadata names no sibling graphs ({e}); re-export it") from e


# ----------------------------------------------------------------------------- graph I/O
@dataclass(frozen=True)
class TensorSpec:
    name: str                       # graph input/output name
    shape: tuple[int | str, ...]    # ints, or the dynamic axis name
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], tuple(d["shape"]), d.get("dtype", "float32"))


def graph_io(role: str, meta: ArtifactMetadata,
             batch: int | str = DYNAMIC_BATCH) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs of one graph of the model ``meta`` describes. ``batch``: 1 or the dynamic axis name."""
    if role not in ROLES:
        raise ValueError(f"unknown graph role {role!r}; choose one of {', '.join(ROLES)}")
    uses_rgb, uses_skeleton, num_frames = meta.uses_rgb, meta.uses_skeleton, meta.num_frames
    side = meta.preprocessing.image_size
    frame = (3, side, side)
    skeleton = TensorSpec("skeleton", (batch, SKELETON_CHANNELS, num_frames, NUM_JOINTS))
    logits = TensorSpec("logits", (batch, meta.num_classes))
    if role == "encoder":
        if not uses_rgb:
            raise ValueError("a model without an RGB stream has no frame encoder")
        return (TensorSpec("frames", (batch, *frame)),), (TensorSpec("features", (batch, FEATURE_DIM)),)
    inputs = []
    if uses_rgb:
        inputs.append(TensorSpec("rgb", (batch, num_frames, *frame)) if role == "clip"
                      else TensorSpec("features", (batch, num_frames, FEATURE_DIM)))
    if uses_skeleton:
        inputs.append(skeleton)
    return tuple(inputs), (logits,)


def parse_batch(batch: str | int) -> int | str:
    """``"1"`` -> 1, ``"dynamic"`` -> the dynamic axis name."""
    batch = str(batch)
    if batch not in BATCH_MODES:
        raise ValueError(f"unknown batch mode {batch!r}; choose one of {', '.join(BATCH_MODES)}")
    return 1 if batch == "1" else DYNAMIC_BATCH


# ----------------------------------------------------------------------------- metadata
def check_metadata(meta: object, source: str | os.PathLike) -> ArtifactMetadata:
    """Metadata read from an artifact, checked against the one schema (format 1 migrated)."""
    try:
        return ArtifactMetadata.from_dict(meta, str(source))
    except MetadataError as e:
        if isinstance(meta, dict) and meta.get("format") is None:
            raise ArtifactError(f"{e}; export it with `mgr export-onnx CHECKPOINT`") from e
        raise ArtifactError(str(e)) from e
