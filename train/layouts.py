"""Dataset layouts as users hold iMiGUE: detection, clip records, frame readers (torch-free).

Layouts (README "Data layouts"):
1. image-level set: ``ROOT/<class id>/<clip>.<frame>.jpg``
2. clip folders:    ``ROOT/<class id>/<clip>/<frame>.jpg``
3. official:        ``ROOT/<labels>.csv`` + ``ROOT/skeleton/<video>/<video>_<frame:012d>_keypoints.json``
                    (+ optional ``ROOT/videos/<video>.mp4``)
Keypoints sit next to the frames or in a parallel tree passed as ``keypoints_root``. The
runtime reads layouts too (``mgr evaluate-stream``), so nothing here imports torch.
"""
from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .classes import index_from_official_id
from .keypoints_io import KEYPOINTS_SUFFIX
from .naming import natural_key

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
