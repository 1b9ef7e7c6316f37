"""Real clips for engines: calibration batches and split evaluation, through train.data.

The dataset reader, the split and the preprocessing are the training code's own
(``train.data``, ``train.split``, ``train.preprocess``), configured from the artifact's
metadata (T, reference frame, keypoint statistics), so calibration and evaluation see
exactly what training and the live loop see.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from mgr.train.background import BackgroundConfig, scan_with_background
from mgr.train.data import ClipDataset, DatasetConfig
from mgr.train.evaluate import compute_metrics
from mgr.train.metadata import ArtifactMetadata
from mgr.train.split import resolve_split, select

from .backends import Backend
from .quantize import Batch, CalibrationData

log = logging.getLogger(__name__)
PARTS = ("train", "val", "test", "all")


@dataclass(frozen=True)
class ClipSource:
    root: Path                            # dataset folder, any layout train.data reads
    part: str = "train"                   # train | val | test | all
    split_file: Path | None = None        # the run's split.json; default: the seeded random split
    keypoints_root: Path | None = None    # parallel keypoint tree, if any
    max_clips: int | None = None          # at most this many clips (evenly spread over the part)
    batch: int = 8                        # clips per batch

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise ValueError(f"unknown split part {self.part!r}; choose one of {', '.join(PARTS)}")


def _dataset(src: ClipSource, metadata: ArtifactMetadata) -> ClipDataset:
    index = scan_with_background(src.root, src.keypoints_root, BackgroundConfig.from_train_config(
        metadata.train_config, metadata.uses_rgb, metadata.uses_skeleton))
    if src.part == "all":
        clips = index.clips
    else:
        split, source = resolve_split(src.split_file, fallback="random", clips=index.clips,
                                      seed=int(metadata.train_config.get("seed", 0)))
        log.debug("split of %s: %s", src.root, source)
        clips = select(index.clips, split, src.part)
    if src.max_clips is not None and len(clips) > src.max_clips:
        keep = np.round(np.linspace(0, len(clips) - 1, src.max_clips)).astype(int)
        clips = [clips[i] for i in keep]
    if not clips:
        raise ValueError(f"{src.root}: no clips in part {src.part!r}")
    cfg = DatasetConfig(metadata.uses_rgb, metadata.uses_skeleton, train=False, preprocessing=metadata.preprocessing)
    return ClipDataset(clips, cfg)


def labelled_batches(src: ClipSource, metadata: ArtifactMetadata) -> Iterator[tuple[np.ndarray | None, np.ndarray | None, np.ndarray]]:
    """(rgb (N, T, 3, 224, 224) | None, skeleton (N, 3, T, 25) | None, labels (N,)) batches."""
    ds = _dataset(src, metadata)
    for start in range(0, len(ds), src.batch):
        items = [ds[i] for i in range(start, min(start + src.batch, len(ds)))]
        rgb = np.stack([it["rgb"].numpy() for it in items]) if "rgb" in items[0] else None
        skel = np.stack([it["skeleton"].numpy() for it in items]) if "skeleton" in items[0] else None
        yield rgb, skel, np.array([it["label"] for it in items])


def dataset_calibration(src: ClipSource, metadata: ArtifactMetadata) -> CalibrationData:
    """Calibration data (preprocessed batches, no labels) from a dataset folder."""
    def batches() -> Iterator[Batch]:
        for rgb, skel, _ in labelled_batches(src, metadata):
            yield rgb, skel
    return batches


def evaluate_backend(backend: Backend, src: ClipSource) -> tuple[dict, np.ndarray]:
    """Top-1/top-5 of a backend on a split part; also returns the logits (N, classes)."""
    logits, labels = [], []
    for rgb, skel, y in labelled_batches(src, backend.metadata):
        logits.append(backend.predict(rgb, skel))
        labels.append(y)
    logits_np, labels_np = np.concatenate(logits), np.concatenate(labels)
    return compute_metrics(logits_np, labels_np, backend.class_names), logits_np


def is_dataset(path: str | os.PathLike) -> bool:
    """A folder (a dataset) rather than an .npz of preprocessed arrays."""
    return Path(path).is_dir()
