"""iMiGUE as users hold it: layout detection, clip records, the Dataset, a frame cache.

Layouts (README "Data layouts"):
1. image-level set: ``ROOT/<class id>/<clip>.<frame>.jpg``
2. clip folders:    ``ROOT/<class id>/<clip>/<frame>.jpg``
3. official:        ``ROOT/<labels>.csv`` + ``ROOT/skeleton/<video>/<video>_<frame:012d>_keypoints.json``
                    (+ optional ``ROOT/videos/<video>.mp4``)
Keypoints sit next to the frames or in a parallel tree passed as ``keypoints_root``.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from .atomic import atomic_write
from .classes import index_from_official_id
from .naming import natural_key  # noqa: F401 (re-exported: the readers' sort)
from .keypoints_io import KEYPOINTS_SUFFIX, KeypointFileError, missing_skeleton, read_openpose_json
from .preprocess import (KeypointStats, Preprocessing, compute_keypoint_stats, crop_and_normalize, preprocess_skeleton,
                         rescale_keypoints, resize_short_side, sample_frame_indices)

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
LAYOUTS = ("image-level", "clip-folders", "official")
OFFICIAL_FRAME_SIZE = (1280, 720)   # iMiGUE videos; the size its OpenPose ran on
OFFICIAL_FPS = 25.0
_FRAME_RE = re.compile(r"^(?P<clip>.+)\.(?P<frame>\d+)$")


class DatasetError(ValueError):
    """A dataset folder that cannot be read as any supported layout."""


@dataclass(frozen=True)
class ClipRecord:
    clip_id: str                          # unique within the dataset, e.g. "23/1529" or "298/5"
    label: int                            # 0-based class index
    frames: tuple[str, ...] = ()          # image paths, in time order (layouts 1, 2)
    keypoints: tuple[str, ...] = ()       # keypoint JSON paths aligned with the frames
    subject: int | None = None            # subject id (official layout)
    video: str | None = None              # video path (official layout, if present)
    frame_range: tuple[int, int] | None = None  # first and last video frame, inclusive (official layout)
    keypoint_template: str | None = None  # "{frame}"-formatted JSON path (official layout)
    source_size: tuple[int, int] | None = None  # (w, h) the keypoints were detected on, if known
    fps: float | None = None              # frames per second, if known

    @property
    def num_frames(self) -> int:
        if self.frame_range is not None:
            return self.frame_range[1] - self.frame_range[0] + 1
        return max(len(self.frames), len(self.keypoints))

    def frame_id(self, i: int) -> int:
        """Video frame number of the clip's i-th frame (official layout)."""
        return self.frame_range[0] + i

    def keypoint_path(self, i: int) -> str | None:
        """Keypoint JSON of the clip's i-th frame, or None if the layout has none."""
        if self.keypoint_template is not None:
            return self.keypoint_template.format(frame=self.frame_id(i))
        return self.keypoints[i] if self.keypoints else None

    def keypoint_paths(self) -> list[str]:
        return [p for p in (self.keypoint_path(i) for i in range(self.num_frames)) if p is not None]


@dataclass
class DatasetIndex:
    root: str
    layout: str
    clips: list[ClipRecord]
    problems: list[str] = field(default_factory=list)   # what did not fit, one line each

    def class_counts(self) -> Counter:
        return Counter(c.label for c in self.clips)

    def by_id(self) -> dict[str, ClipRecord]:
        return {c.clip_id: c for c in self.clips}


# ----------------------------------------------------------------------------- detection
def _numeric_dirs(root: Path) -> list[Path]:
    """Class folders named "1".."32", sorted as numbers ("2" before "10")."""
    dirs = [p for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(dirs, key=lambda p: int(p.name))


def _find_label_csv(root: Path) -> Path | None:
    for p in sorted(root.glob("*.csv")):
        with open(p, newline="") as fh:
            header = fh.readline().lower()
        if all(k in header for k in ("video_id", "start_frame", "end_frame", "class")):
            return p
    return None


def detect_layout(root: str | os.PathLike) -> str:
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: data folder not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    if _find_label_csv(root) is not None:
        return "official"
    for d in _numeric_dirs(root):
        for p in d.iterdir():
            if p.is_dir():
                return "clip-folders"
            if p.suffix.lower() in IMAGE_EXTS:
                return "image-level"
    raise DatasetError(f"{root}: no supported layout found; expected one of {', '.join(LAYOUTS)}: "
                       "<class id>/<clip>.<frame>.jpg, <class id>/<clip>/<frame>.jpg, "
                       "or a label CSV (video_id,...,start_frame,end_frame,class) with skeleton/<video>/")


def scan_dataset(root: str | os.PathLike, keypoints_root: str | os.PathLike | None = None) -> DatasetIndex:
    """Read a dataset folder in any supported layout into clip records."""
    root = Path(root)
    layout = detect_layout(root)
    kp_root = Path(keypoints_root) if keypoints_root else None
    if kp_root is not None and not kp_root.is_dir():
        raise DatasetError(f"{kp_root}: keypoints folder not found")
    if layout == "official":
        index = _scan_official(root, kp_root)
    else:
        index = _scan_images(root, kp_root, layout)
    if not index.clips:
        raise DatasetError(f"{root}: layout {layout!r} detected but no clips found; " + "; ".join(index.problems[:3]))
    return index


def _kp_path(frame: Path, root: Path, kp_root: Path | None) -> str:
    rel = frame.relative_to(root).with_name(frame.stem + KEYPOINTS_SUFFIX)
    return str((kp_root or root) / rel)


def _scan_images(root: Path, kp_root: Path | None, layout: str) -> DatasetIndex:
    clips, problems = [], []
    for d in _numeric_dirs(root):
        try:
            label = index_from_official_id(d.name)
        except ValueError as e:
            problems.append(f"{d}: skipped: {e}")
            continue
        groups: dict[str, list[tuple[int, Path]]] = {}
        if layout == "image-level":
            for p in d.iterdir():
                if p.suffix.lower() not in IMAGE_EXTS:
                    continue
                m = _FRAME_RE.match(p.stem)
                if not m:
                    problems.append(f"{p}: name is not <clip>.<frame>{p.suffix}")
                    continue
                groups.setdefault(m["clip"], []).append((int(m["frame"]), p))
        else:
            for c in d.iterdir():
                if not c.is_dir():
                    continue
                frames = sorted((p for p in c.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=natural_key)
                groups[c.name] = list(enumerate(frames))
        if not groups:
            problems.append(f"{d}: empty class folder (class {d.name})")
        for clip, frames in sorted(groups.items()):
            if not frames:
                problems.append(f"{d / clip}: clip folder without frames")
                continue
            frames.sort(key=lambda t: t[0])
            paths = tuple(str(p) for _, p in frames)
            kps = tuple(_kp_path(p, root, kp_root) for _, p in frames)
            clips.append(ClipRecord(f"{d.name}/{clip}", label, paths, kps))
    return DatasetIndex(str(root), layout, clips, problems)


def _find_video(root: Path, video_id: str) -> str | None:
    for folder in (root / "videos", root):
        for ext in VIDEO_EXTS:
            p = folder / f"{video_id}{ext}"
            if p.is_file():
                return str(p)
    return None


@lru_cache(maxsize=None)
def _video_geometry(path: str) -> tuple[tuple[int, int], float]:
    """(w, h) and fps of a video: keypoints extracted from a resized copy are in its pixels."""
    cap = cv2.VideoCapture(path)
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    return ((w, h) if w > 0 and h > 0 else OFFICIAL_FRAME_SIZE), (fps if fps > 0 else OFFICIAL_FPS)


def _scan_official(root: Path, kp_root: Path | None) -> DatasetIndex:
    csv_path = _find_label_csv(root)
    skel = kp_root or root / "skeleton"
    clips, problems, videos = [], [], {}
    with open(csv_path, newline="") as fh:
        for line_no, row in enumerate(csv.DictReader(fh), start=2):
            try:
                vid = row["video_id"].strip()
                start, end = int(row["start_frame"]), int(row["end_frame"])
                label = index_from_official_id(row["class"])
                subject = int(row["subject_id"]) if row.get("subject_id", "").strip() else None
            except (KeyError, ValueError, AttributeError) as e:
                problems.append(f"{csv_path}:{line_no}: skipped row: {e}")
                continue
            if end < start:
                problems.append(f"{csv_path}:{line_no}: end_frame {end} < start_frame {start}")
                continue
            template = str(skel / vid / f"{vid}_{{frame:012d}}{KEYPOINTS_SUFFIX}")
            if vid not in videos:
                videos[vid] = _find_video(root, vid)
            size, fps = _video_geometry(videos[vid]) if videos[vid] else (OFFICIAL_FRAME_SIZE, OFFICIAL_FPS)
            clips.append(ClipRecord(f"{vid}/{row.get('label_id', line_no)}", label, subject=subject,
                                    video=videos[vid], frame_range=(start, end), keypoint_template=template,
                                    source_size=size, fps=fps))
    return DatasetIndex(str(root), "official", clips, problems)


# ----------------------------------------------------------------------------- reading
def read_image_rgb(path: str) -> np.ndarray:
    """Decode an image file to HxWx3 RGB uint8, or raise ValueError naming the file."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: cannot decode image (missing, empty or corrupt)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_video_frames_rgb(path: str, frame_ids: list[int]) -> list[np.ndarray]:
    cap = cv2.VideoCapture(path)
    try:
        out = []
        for f in frame_ids:
            cap.set(cv2.CAP_PROP_POS_FRAMES, f)
            ok, img = cap.read()
            if not ok:
                raise ValueError(f"{path}: cannot decode frame {f}")
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        return out
    finally:
        cap.release()


def image_size(path: str) -> tuple[int, int]:
    """(w, h) from the file header, without decoding pixels."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read image header: {e}") from e


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
