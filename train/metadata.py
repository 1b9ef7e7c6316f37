"""The artifact metadata schema: what every checkpoint, ONNX graph and TensorRT sidecar says about itself.

One frozen dataclass, ``ArtifactMetadata``, with ``to_dict`` / ``from_dict`` and validation,
and its ``Preprocessing`` section: every number the preprocessing functions of
``train/preprocess.py`` use (resize, crop, ImageNet mean and std, confidence threshold,
reference frame, T, keypoint statistics). The live loop, evaluation and the export checks
read those numbers from the artifact, so changing a default for new runs never changes
what an old artifact means (README "Architecture", contracts).

Standard library only: the runtime install (no torch, no numpy needed here) imports it.

Format versions:
- 1: no ``preprocessing`` section; ``num_frames``, ``reference_size`` and ``keypoint_stats``
  at the top level. Read with a warning that names the values assumed for the rest.
- 2: the ``preprocessing`` section holds them all.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

log = logging.getLogger(__name__)

FORMAT_NAME = "mgr-checkpoint"
FORMAT_VERSION = 2
MODALITIES = ("fusion", "rgb", "skeleton")


class MetadataError(ValueError):
    """Metadata that is not ours, too new, or malformed; the message names the source and the key."""


@dataclass(frozen=True)
class KeypointStats:
    """Per-coordinate mean and std of valid joints (pixels of the reference frame)."""
    mean: tuple[float, float]  # (mean x, mean y)
    std: tuple[float, float]   # (std x, std y), floored at 1 pixel

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "KeypointStats":
        return cls(tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))

    @classmethod
    def identity(cls, reference_size: tuple[int, int] = (320, 176)) -> "KeypointStats":
        """Center of the reference frame and a quarter of its size: a sane default before fitting."""
        w, h = reference_size
        return cls((w / 2, h / 2), (w / 4, h / 4))


@dataclass(frozen=True)
class Preprocessing:
    """Every number the preprocessing functions use; the defaults are the reference report's."""
    num_frames: int = 4                                        # T: frames per clip
    image_size: int = 224                                      # network input side (square crop)
    resize_short: int = 256                                    # short side before cropping
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)   # ImageNet RGB mean (of [0, 1] values)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)    # ImageNet RGB std
    reference_size: tuple[int, int] = (320, 176)               # (w, h) of the skeleton reference frame
    conf_threshold: float = 0.1                                # a joint below this confidence is missing
    keypoint_stats: KeypointStats = field(default_factory=lambda: KeypointStats.identity((320, 176)))
    train_crop_scale: tuple[float, float] = (0.08, 1.0)        # RandomResizedCrop area range (training only)
    train_crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)     # RandomResizedCrop aspect range (training only)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        d["keypoint_stats"] = self.keypoint_stats.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: object, source: str = "metadata") -> "Preprocessing":
        """Checked: every key present, of the right kind and range; the error names the key."""
        where = f"{source}: preprocessing"
        if not isinstance(d, dict):
            raise MetadataError(f"{where} is {type(d).__name__}, not an object")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise MetadataError(f"{where} has unknown keys {', '.join(unknown)}; written by a newer mgr?")
        missing = [f.name for f in fields(cls) if f.name not in d]
        if missing:
            raise MetadataError(f"{where} lacks {', '.join(missing)}")
        return cls(num_frames=_int(d, "num_frames", where),
                   image_size=_int(d, "image_size", where),
                   resize_short=_int(d, "resize_short", where),
                   mean=_floats(d, "mean", 3, where), std=_floats(d, "std", 3, where, positive=True),
                   reference_size=tuple(int(v) for v in _floats(d, "reference_size", 2, where, positive=True)),
                   conf_threshold=_float(d, "conf_threshold", where),
                   keypoint_stats=_stats(d.get("keypoint_stats"), where),
                   train_crop_scale=_floats(d, "train_crop_scale", 2, where, positive=True),
                   train_crop_ratio=_floats(d, "train_crop_ratio", 2, where, positive=True)).check(where)

    def check(self, where: str = "preprocessing") -> "Preprocessing":
        if self.resize_short < self.image_size:
            raise MetadataError(f"{where}.resize_short {self.resize_short} is smaller than image_size "
                                f"{self.image_size}: the center crop would not fit")
        if not 0.0 <= self.conf_threshold <= 1.0:
            raise MetadataError(f"{where}.conf_threshold {self.conf_threshold} is not in [0, 1]")
        return self


@dataclass(frozen=True)
class ArtifactMetadata:
    """The self-description every artifact (checkpoint, ONNX graph, TensorRT sidecar) carries."""
    modality: str                           # fusion | rgb | skeleton
    class_names: tuple[str, ...]            # index -> name, the model's output order
    preprocessing: Preprocessing            # every number preprocessing uses
    model_config: dict                      # FusionConfig.to_dict() (plain data)
    train_config: dict = field(default_factory=dict)   # how the run was trained (plain data)
    metrics: dict = field(default_factory=dict)        # numbers of the epoch this file holds
    clip_seconds: float | None = None       # median clip duration of the training data; the live window default
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    # convenience views of the preprocessing section
    @property
    def num_frames(self) -> int:
        return self.preprocessing.num_frames

    @property
    def reference_size(self) -> tuple[int, int]:
        return self.preprocessing.reference_size

    @property
    def keypoint_stats(self) -> KeypointStats:
        return self.preprocessing.keypoint_stats

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def uses_rgb(self) -> bool:
        return self.modality in ("fusion", "rgb")

    @property
    def uses_skeleton(self) -> bool:
        return self.modality in ("fusion", "skeleton")

    def with_metrics(self, metrics: dict) -> "ArtifactMetadata":
        return replace(self, metrics=dict(metrics))

    def to_dict(self) -> dict:
        """Plain data (JSON and ``torch.save(weights_only)`` safe)."""
        return {"format": self.format, "format_version": self.format_version, "modality": self.modality,
                "class_names": list(self.class_names), "preprocessing": self.preprocessing.to_dict(),
                "model_config": dict(self.model_config), "train_config": dict(self.train_config),
                "metrics": dict(self.metrics), "clip_seconds": self.clip_seconds}

    @classmethod
    def from_dict(cls, d: object, source: str = "metadata") -> "ArtifactMetadata":
        """Checked metadata; version 1 is migrated (with a warning naming the assumed values)."""
        if isinstance(d, ArtifactMetadata):
            return d
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            found = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise MetadataError(f"{source}: carries no mgr metadata (format {found!r})")
        version = d.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise MetadataError(f"{source}: format_version {version!r} is not a positive whole number")
        if version > FORMAT_VERSION:
            raise MetadataError(f"{source}: format version {version} is newer than this mgr "
                                f"(reads up to {FORMAT_VERSION}); upgrade mgr")
        if version == 1:
            d = migrate_v1(d, source)
        for key in ("modality", "class_names", "preprocessing", "model_config"):
            if key not in d:
                raise MetadataError(f"{source}: mgr metadata lacks {key}; re-export it")
        if d["modality"] not in MODALITIES:
            raise MetadataError(f"{source}: modality {d['modality']!r} is not one of {', '.join(MODALITIES)}")
        names = d["class_names"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise MetadataError(f"{source}: class_names must be a non-empty list of strings")
        for key in ("model_config", "train_config", "metrics"):
            if not isinstance(d.get(key, {}), dict):
                raise MetadataError(f"{source}: {key} must be an object, got {type(d[key]).__name__}")
        clip_seconds = d.get("clip_seconds")
        if clip_seconds is not None and not (_is_number(clip_seconds) and clip_seconds > 0):
            raise MetadataError(f"{source}: clip_seconds {clip_seconds!r} is not a positive number")
        prep = Preprocessing.from_dict(d["preprocessing"], source)
        model_frames = d["model_config"].get("num_frames", prep.num_frames)
        if model_frames != prep.num_frames:
            raise MetadataError(f"{source}: model_config.num_frames {model_frames} differs from "
                                f"preprocessing.num_frames {prep.num_frames}")
        return cls(modality=d["modality"], class_names=tuple(names), preprocessing=prep,
                   model_config=dict(d["model_config"]), train_config=dict(d.get("train_config") or {}),
                   metrics=dict(d.get("metrics") or {}),
                   clip_seconds=float(clip_seconds) if clip_seconds is not None else None)


def migrate_v1(d: dict, source: str) -> dict:
    """Version 1 -> 2: its T, reference frame and keypoint statistics move into ``preprocessing``;
    the numbers version 1 did not store take the values that release used, said in a warning."""
    try:
        stats = KeypointStats.from_dict(d["keypoint_stats"])
        reference = tuple(int(v) for v in d["reference_size"])
        num_frames = int(d["num_frames"])
    except (KeyError, TypeError, ValueError) as e:
        raise MetadataError(f"{source}: version-1 metadata lacks or garbles {e}; re-export it") from e
    prep = Preprocessing(num_frames=num_frames, reference_size=reference, keypoint_stats=stats)
    assumed = {k: v for k, v in prep.to_dict().items()
               if k not in ("num_frames", "reference_size", "keypoint_stats")}
    log.warning("%s: format version 1 (no preprocessing section); assuming %s", source,
                ", ".join(f"{k}={v}" for k, v in assumed.items()))
    out = {k: v for k, v in d.items() if k not in ("num_frames", "reference_size", "keypoint_stats")}
    out.update(format_version=FORMAT_VERSION, preprocessing=prep.to_dict())
    return out


# ----------------------------------------------------------------------------- checks
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(d: dict, key: str, where: str) -> int:
    v = d[key]
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise MetadataError(f"{where}.{key} must be a positive whole number, got {v!r}")
    return v


def _float(d: dict, key: str, where: str) -> float:
    v = d[key]
    if not _is_number(v):
        raise MetadataError(f"{where}.{key} must be a number, got {v!r}")
    return float(v)


def _floats(d: dict, key: str, n: int, where: str, positive: bool = False) -> tuple:
    v = d[key]
    if not isinstance(v, (list, tuple)) or len(v) != n or not all(_is_number(x) for x in v):
        raise MetadataError(f"{where}.{key} must be a list of {n} numbers, got {v!r}")
    if positive and not all(x > 0 for x in v):
        raise MetadataError(f"{where}.{key} must be positive, got {v!r}")
    return tuple(float(x) for x in v)


def _stats(v: object, where: str) -> KeypointStats:
    if not isinstance(v, dict) or set(v) != {"mean", "std"}:
        raise MetadataError(f"{where}.keypoint_stats must be an object with mean and std, got {v!r}")
    inner = f"{where}.keypoint_stats"
    return KeypointStats(_floats(v, "mean", 2, inner), _floats(v, "std", 2, inner, positive=True))
