"""iMiGUE for training: the Dataset of clips, the frame cache, keypoint reading and statistics.

The layouts, clip records and frame readers are torch-free and live in ``layouts`` (imported
here under their old names).
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write
from .keypoints_io import KeypointFileError, missing_skeleton, read_openpose_json
from .layouts import (IMAGE_EXTS, LAYOUTS, OFFICIAL_FPS, OFFICIAL_FRAME_SIZE, VIDEO_EXTS,  # noqa: F401 (re-exported)
                      ClipRecord, DatasetError, DatasetIndex, detect_layout, image_size,
                      read_image_rgb, read_video_frames_rgb, scan_dataset)
from .naming import natural_key  # noqa: F401 (re-exported: the readers' sort)
from .preprocess import (KeypointStats, Preprocessing, compute_keypoint_stats, crop_and_normalize, preprocess_skeleton,
                         rescale_keypoints, resize_short_side, sample_frame_indices)

log = logging.getLogger(__name__)


class FrameCache:
    """Disk cache of decoded, short-side-256 frames (uint8 .npy), shared by DataLoader workers.

    iMiGUE frames are tiny, so JPEG decoding dominates a small model's step; the cache
    keeps the output of ``resize_short_side`` keyed by path, size and mtime.
    """

    def __init__(self, directory: str | os.PathLike, resize_short: int):
        self.dir = Path(directory)
        self.resize_short = resize_short
        self.dir.mkdir(parents=True, exist_ok=True)

    def _key(self, path: str) -> Path:
        st = os.stat(path)
        ident = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{self.resize_short}"
        h = hashlib.sha1(ident.encode()).hexdigest()
        return self.dir / h[:2] / f"{h}.npy"

    def get(self, path: str) -> np.ndarray:
        key = self._key(path)
        try:
            return np.load(key)
        except (OSError, ValueError, EOFError):   # absent, or damaged: rebuild the entry
            pass
        img = resize_short_side(read_image_rgb(path), self.resize_short)
        key.parent.mkdir(exist_ok=True)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, img)
        try:
            atomic_write(key, write)
        except OSError as e:                      # a full cache disk must not stop training
            log.warning("frame cache: cannot write %s (%s); continuing without caching it", key, e)
        return img


# ----------------------------------------------------------------------------- dataset
def clip_source_size(rec: ClipRecord) -> tuple[int, int]:
    """(w, h) of the frames the clip's keypoints were detected on."""
    if rec.source_size is not None:
        return rec.source_size
    if rec.frames:
        return image_size(rec.frames[0])
    raise ValueError(f"clip {rec.clip_id}: no frames to take the keypoint frame size from")


def read_clip_keypoints(rec: ClipRecord, indices, prep: Preprocessing,
                        source_size: tuple[int, int] | None = None) -> np.ndarray:
    """(T, 25, 3) keypoints of the chosen frames, in reference-frame pixels, missing joints zeroed.

    A missing JSON or no person is an all-missing frame; a corrupt JSON is too, with a warning.
    """
    size = source_size or clip_source_size(rec)
    out = []
    for i in indices:
        try:
            path = rec.keypoint_path(int(i))
            kp, _ = read_openpose_json(path) if path else (missing_skeleton(), 0)
        except KeypointFileError as e:
            log.warning("%s; using an all-missing skeleton for this frame", e)
            kp = missing_skeleton()
        out.append(rescale_keypoints(kp, size, prep))
    return np.stack(out)  # (T, 25, 3)


def fit_keypoint_stats(clips: list[ClipRecord], prep: Preprocessing, frames_per_clip: int = 8) -> KeypointStats:
    """Keypoint mean/std over the training split (up to ``frames_per_clip`` evenly spaced frames a clip)."""
    arrays = []
    for rec in clips:
        n = rec.num_frames
        idx = np.unique(np.round(np.linspace(0, n - 1, min(n, frames_per_clip))).astype(int))
        try:
            arrays.append(read_clip_keypoints(rec, idx, prep))
        except ValueError as e:
            log.warning("keypoint statistics skip clip %s: %s", rec.clip_id, e)
    return compute_stats_or_default(arrays, prep)


def compute_stats_or_default(arrays: list[np.ndarray], prep: Preprocessing) -> KeypointStats:
    try:
        return compute_keypoint_stats(arrays, prep.conf_threshold)
    except ValueError:
        log.warning("no valid joints in the training split: keypoint statistics fall back to the frame center")
        return KeypointStats.identity(prep.reference_size)


def median_clip_seconds(clips: list[ClipRecord]) -> float | None:
    """Median clip duration when the layout gives frame ranges and a frame rate (official)."""
    secs = [c.num_frames / c.fps for c in clips if c.frame_range and c.fps]
    return float(np.median(secs)) if secs else None


def frame_key(rec: ClipRecord, i: int) -> int:
    """A stable 63-bit id of the clip's i-th frame (image path, or video and frame number)."""
    name = rec.frames[i] if rec.frames else f"{rec.video}#{rec.frame_id(i)}"
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") >> 1


@dataclass(frozen=True)
class DatasetConfig:
    uses_rgb: bool                        # decode frames (fusion, rgb)
    uses_skeleton: bool                   # read keypoints (fusion, skeleton)
    train: bool                           # random sampling and crops vs deterministic
    preprocessing: Preprocessing          # every preprocessing number, keypoint statistics included
    seed: int = 0                         # augmentation seed: rng(seed, epoch, clip) makes resume exact
    cache_dir: str | None = None          # decoded-frame cache folder, or None
    augment: bool = True                  # random crops when train; off when frozen features are cached
    frame_keys: bool = False              # also return a stable int64 id per sampled frame


class ClipDataset(torch.utils.data.Dataset):
    """Clip records -> {"rgb": (T,3,224,224), "skeleton": (3,T,25), "label": int}."""

    def __init__(self, clips: list[ClipRecord], cfg: DatasetConfig):
        self.clips, self.cfg, self.epoch = list(clips), cfg, 0
        self.cache = FrameCache(cfg.cache_dir, cfg.preprocessing.resize_short) if cfg.cache_dir else None
        if cfg.uses_rgb:
            no_frames = [c.clip_id for c in self.clips if not c.frames and not c.video]
            if no_frames:
                raise DatasetError(f"{len(no_frames)} clips have no frames or video (e.g. {no_frames[0]}); "
                                   "the rgb and fusion modalities need them: use --modality skeleton")
        self._sizes: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _frames(self, rec: ClipRecord, idx) -> list[np.ndarray]:
        if rec.frames:
            paths = [rec.frames[i] for i in idx]
            size = self.cfg.preprocessing.resize_short
            load = self.cache.get if self.cache is not None else (lambda p: resize_short_side(read_image_rgb(p), size))
            try:
                return [load(p) for p in paths]
            except ValueError as e:
                raise ValueError(f"{e} (clip {rec.clip_id}); run `mgr check-data` to list every bad file") from e
        return [resize_short_side(f, self.cfg.preprocessing.resize_short)
                for f in read_video_frames_rgb(rec.video, [rec.frame_id(int(i)) for i in idx])]

    def __getitem__(self, i: int) -> dict:
        rec, cfg, prep = self.clips[i], self.cfg, self.cfg.preprocessing
        rng = np.random.default_rng([cfg.seed, self.epoch, i]) if cfg.train else None
        idx = sample_frame_indices(rec.num_frames, prep.num_frames, cfg.train, rng)
        item = {"label": rec.label}
        if cfg.uses_rgb:
            crop_random = cfg.train and cfg.augment
            rgb = [crop_and_normalize(f, prep, crop_random, rng) for f in self._frames(rec, idx)]
            item["rgb"] = torch.from_numpy(np.stack(rgb))                        # (T, 3, 224, 224)
            if cfg.frame_keys:
                item["frame_keys"] = torch.tensor([frame_key(rec, int(j)) for j in idx], dtype=torch.int64)
        if cfg.uses_skeleton:
            if rec.clip_id not in self._sizes:
                self._sizes[rec.clip_id] = clip_source_size(rec)
            kp = read_clip_keypoints(rec, idx, prep, self._sizes[rec.clip_id])
            item["skeleton"] = torch.from_numpy(preprocess_skeleton(kp, prep))  # (3, T, 25)
        return item
