"""Untrimmed videos of the official layout: which frames no labelled interval covers.

The official layout (README "Data layouts", layout 3) labels intervals of whole videos; what
lies between them is background, the material of "no gesture" clips. This module groups the
scanned clip records by video, sets aside intervals that cannot be used as they are
(overlapping an earlier interval, running past the video's end) and lists the gaps.

Torch-free: train.data imports torch, so the records arrive duck-typed (``ClipRecord`` and
``DatasetIndex`` are named for the type checker only); OpenCV is imported only to count a
video's frames.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .keypoints_io import KEYPOINTS_SUFFIX

if TYPE_CHECKING:   # train.data imports torch; this module must not
    from .data import ClipRecord, DatasetIndex

log = logging.getLogger(__name__)

DEFAULT_FPS = 25.0   # iMiGUE's frame rate, for records that carry none


@dataclass(frozen=True)
class VideoLabels:
    video_id: str                # the label CSV's video_id
    video: str | None            # video path, if the layout has it
    num_frames: int | None       # frames in the video (OpenCV's count); without a video (or a count), 1 + the
                                 # last frame number among skeleton/<id>/ JSON files (their count when every
                                 # frame has one: a folder with the clips' frames only still has the right
                                 # end); None when neither exists
    fps: float                   # the clips' frame rate (from the video), else 25
    subject: int | None          # subject id of the video's clips
    clips: tuple                 # the video's usable ClipRecords, in start order
    problems: tuple[str, ...]    # one line per interval left out of .clips: overlapping an earlier one,
                                 # running past the video's end, starting before frame 0
    keypoint_template: str | None = None   # "{frame}"-formatted per-frame JSON path of this video
    labelled: tuple[tuple[int, int], ...] = ()   # frames covered by ANY of the video's intervals, left-out ones
                                                 # included (merged, inclusive, clipped to the video): an
                                                 # overlapping interval often runs past the kept one


def _video_id(clip: ClipRecord) -> str:
    """The CSV's video_id: the official scan names clips "<video_id>/<label_id>"."""
    return clip.clip_id.split("/", 1)[0]


def _video_frame_count(path: str) -> int | None:
    import cv2
    cap = cv2.VideoCapture(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
    return n if n > 0 else None


def _skeleton_frames(folder: Path, video_id: str) -> set[int]:
    """Frame numbers that have a per-frame JSON (``<id>_<frame>_keypoints.json``) in ``folder``."""
    pattern = re.compile(rf"^{re.escape(video_id)}_(\d+){re.escape(KEYPOINTS_SUFFIX)}$")
    try:
        names = os.listdir(folder)
    except OSError:                 # no folder: no frames
        return set()
    return {int(m[1]) for m in map(pattern.match, names) if m}


def _template(video_id: str, clips: list, skeleton_root: str | None) -> str | None:
    if skeleton_root is not None:
        return str(Path(skeleton_root) / video_id / f"{video_id}_{{frame:012d}}{KEYPOINTS_SUFFIX}")
    return next((c.keypoint_template for c in clips if c.keypoint_template), None)


def _num_frames(video: str | None, template: str | None, video_id: str) -> int | None:
    if video is not None:
        n = _video_frame_count(video)
        if n is not None:
            return n
        log.warning("%s: cannot count the video's frames; taking them from its skeleton files", video)
    if template is None:
        return None
    frames = _skeleton_frames(Path(template.format(frame=0)).parent, video_id)
    return max(frames) + 1 if frames else None


def _merge(spans, num_frames: int | None = None) -> list[tuple[int, int]]:
    """Inclusive ranges merged where they overlap or touch, clipped to 0..num_frames-1."""
    last = num_frames - 1 if num_frames is not None else None
    merged: list[tuple[int, int]] = []
    for a, b in sorted((max(0, a), b if last is None else min(b, last)) for a, b in spans):
        if a > b:
            continue
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _usable(clips: list, video_id: str, num_frames: int | None) -> tuple[tuple, tuple[str, ...]]:
    """Clips in start order without the ones that overlap an earlier kept one or leave the video."""
    kept, problems = [], []
    for c in sorted(clips, key=lambda c: (c.frame_range[0], c.frame_range[1])):
        a, b = c.frame_range
        where = f"video {video_id}: clip {c.clip_id} (frames {a}..{b})"
        if a < 0:
            problems.append(f"{where} starts before frame 0")
        elif num_frames is not None and b >= num_frames:
            problems.append(f"{where} runs past the end of the video ({num_frames} frames, 0..{num_frames - 1})")
        elif kept and a <= kept[-1].frame_range[1]:
            k = kept[-1]
            problems.append(f"{where} overlaps clip {k.clip_id} (frames {k.frame_range[0]}..{k.frame_range[1]})")
        else:
            kept.append(c)
    return tuple(kept), tuple(problems)


def group_videos(index: DatasetIndex, skeleton_root: str | None = None) -> list[VideoLabels]:
    """The index's clips grouped by video, in the label file's video order.

    ``skeleton_root`` is the folder of per-video skeleton folders (default: the one the
    scan used, ``ROOT/skeleton`` or its ``keypoints_root``). An interval overlapping an
    earlier kept one (in start order) is reported and left out, as is one past the end.
    """
    if index.layout != "official":
        raise ValueError(f"{index.root}: layout {index.layout!r} has no untrimmed videos; background gaps need the "
                         "official layout (label CSV + skeleton/<video>/)")
    by_video: dict[str, list] = {}
    for c in index.clips:
        if c.frame_range is None:
            raise ValueError(f"{index.root}: clip {c.clip_id} has no frame range; not an official-layout record")
        by_video.setdefault(_video_id(c), []).append(c)
    out = []
    for vid, clips in by_video.items():
        template = _template(vid, clips, skeleton_root)
        video = next((c.video for c in clips if c.video), None)
        n = _num_frames(video, template, vid)
        kept, problems = _usable(clips, vid, n)
        fps = next((float(c.fps) for c in clips if c.fps), DEFAULT_FPS)
        subject = next((c.subject for c in clips if c.subject is not None), None)
        labelled = tuple(_merge((c.frame_range for c in clips), n))
        out.append(VideoLabels(vid, video, n, fps, subject, kept, problems, template, labelled))
    return out


def background_gaps(v: VideoLabels, margin_frames: int = 0) -> list[tuple[int, int]]:
    """Inclusive frame ranges that no labelled interval covers (``v.labelled``, the left-out intervals
    included, and ``v.clips``), each shrunk by ``margin_frames`` on a side next to a label (not at the
    video's start or end); empty ranges dropped. [] without a frame count."""
    if v.num_frames is None:
        return []
    if margin_frames < 0:
        raise ValueError(f"video {v.video_id}: margin_frames must be >= 0, got {margin_frames}")
    gaps, first, after_label = [], 0, False
    for a, b in _merge([*v.labelled, *(c.frame_range for c in v.clips)], v.num_frames):
        lo, hi = first + (margin_frames if after_label else 0), a - 1 - margin_frames
        if lo <= hi:
            gaps.append((lo, hi))
        first, after_label = b + 1, True
    lo, hi = first + (margin_frames if after_label else 0), v.num_frames - 1
    if lo <= hi:
        gaps.append((lo, hi))
    return gaps


def background_seconds(v: VideoLabels) -> float:
    """Seconds of the video that no labelled interval covers (0 without a frame count)."""
    return sum(b - a + 1 for a, b in background_gaps(v)) / v.fps


def frames_lacking_skeleton(v: VideoLabels, gaps: list[tuple[int, int]]) -> int:
    """How many frames of ``gaps`` have no per-frame JSON file (``<id>_<frame:012d>_keypoints.json``)."""
    total = sum(b - a + 1 for a, b in gaps)
    if total == 0:
        return 0
    if v.keypoint_template is None:
        return total
    folder, name = os.path.split(v.keypoint_template)     # one listing, not one stat per frame
    names = set(os.listdir(folder)) if os.path.isdir(folder) else set()
    return sum(name.format(frame=f) not in names for a, b in gaps for f in range(a, b + 1))
