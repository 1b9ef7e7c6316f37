"""`mgr check-data`: what a dataset folder holds and what is wrong with it, without crashing."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .data import DatasetIndex, image_size, read_image_rgb, scan_dataset
from .keypoints_io import KeypointFileError, read_openpose_json
from .untrimmed import background_gaps, frames_lacking_skeleton, group_videos


@dataclass(frozen=True)
class VideoBackground:
    video_id: str              # the label CSV's video_id
    subject: int | None        # its subject
    num_frames: int | None     # frames in the video (or from its skeleton files); None: unknown
    clips: int                 # usable labelled intervals (overlapping or out-of-range ones left out)
    background_s: float        # seconds no labelled interval covers (0 when num_frames is None)
    gap_frames: int            # those frames
    lacking_skeleton: int      # gap frames without a per-frame JSON: no background clips there


@dataclass
class DataReport:
    root: str
    layout: str
    clips_per_class: Counter
    frames_per_clip: list[int]
    problems: list[str] = field(default_factory=list)         # layout-level: names, empty classes
    unreadable_images: list[str] = field(default_factory=list)
    missing_keypoints: int = 0                                 # frames without a JSON
    corrupt_keypoints: list[str] = field(default_factory=list)
    frames_without_person: int = 0
    frames_checked: int = 0
    video_problems: list[str] = field(default_factory=list)   # official layout: unreadable videos, ranges past the end
    background: list[VideoBackground] = field(default_factory=list)   # official layout: one per video, CSV order
    interval_problems: list[str] = field(default_factory=list)  # official layout: overlapping or out-of-range intervals

    def background_totals(self) -> dict:
        """Videos, background seconds, and the videos (and gap frames) lacking per-frame skeletons."""
        lacking = [b for b in self.background if b.lacking_skeleton]
        return {"videos": len(self.background), "background_s": sum(b.background_s for b in self.background),
                "unknown_length": sum(b.num_frames is None for b in self.background),
                "videos_lacking_skeleton": len(lacking),
                "frames_lacking_skeleton": sum(b.lacking_skeleton for b in lacking)}

    def frame_stats(self) -> dict:
        f = np.asarray(self.frames_per_clip or [0])
        return {"min": int(f.min()), "median": float(np.median(f)), "max": int(f.max())}


def check_dataset(root: str, keypoints_root: str | None = None, decode_images: bool = False,
                  progress=None) -> DataReport:
    """Scan every clip: images (header, or full decode with ``decode_images``) and keypoint JSON."""
    index: DatasetIndex = scan_dataset(root, keypoints_root)
    rep = DataReport(index.root, index.layout, index.class_counts(), [c.num_frames for c in index.clips],
                     list(index.problems))
    video_frames: dict[str, int | None] = {}
    for i, clip in enumerate(index.clips):
        if clip.video is not None and clip.frame_range is not None:
            _check_video_range(clip, video_frames, rep)
        for path in clip.frames:
            try:
                if decode_images:
                    read_image_rgb(path)
                else:
                    image_size(path)
            except ValueError as e:
                rep.unreadable_images.append(str(e))
        for path in clip.keypoint_paths():
            rep.frames_checked += 1
            try:
                kp, people = read_openpose_json(path)
            except KeypointFileError as e:
                rep.corrupt_keypoints.append(str(e))
                continue
            if people == 0:
                rep.missing_keypoints += not os.path.exists(path)
                rep.frames_without_person += 1
        if progress:
            progress(i + 1, len(index.clips))
    if index.layout == "official":
        _check_background(index, keypoints_root, rep)
    return rep


def _check_background(index: DatasetIndex, keypoints_root: str | None, rep: DataReport) -> None:
    """Official layout: per video, the background (frames outside every labelled interval) and whether its
    frames have skeletons; and the intervals that overlap an earlier one or leave the video."""
    for v in group_videos(index, keypoints_root):
        gaps = background_gaps(v)
        frames = sum(b - a + 1 for a, b in gaps)
        rep.background.append(VideoBackground(v.video_id, v.subject, v.num_frames, len(v.clips), frames / v.fps,
                                              frames, frames_lacking_skeleton(v, gaps)))
        rep.interval_problems.extend(v.problems)


def _check_video_range(clip, video_frames: dict, rep: DataReport) -> None:
    """Official layout: the clip's video opens, and its frame range lies inside the video."""
    import cv2
    if clip.video not in video_frames:
        cap = cv2.VideoCapture(clip.video)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else None
        cap.release()
        video_frames[clip.video] = n
        if n is None or n <= 0:
            rep.video_problems.append(f"{clip.video}: cannot be opened as a video")
    n = video_frames[clip.video]
    if n and clip.frame_range[1] >= n:
        rep.video_problems.append(f"{clip.video}: clip {clip.clip_id} asks for frames {clip.frame_range[0]}.."
                                  f"{clip.frame_range[1]}, the video has {n} (0..{n - 1})")
