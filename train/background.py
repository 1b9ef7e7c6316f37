"""The learned "no gesture" class: training clips cut from the gaps between labelled intervals.

An untrimmed video of the official layout (README "Data layouts") is labelled only where a
micro-gesture happens; every other frame is background. ``mgr train --background`` adds
one class after the 32 official ones, "no gesture" (index 32), whose clips are cut from
those gaps at the length distribution of the labelled clips, so a background clip looks
to the model like a gesture clip in everything but the gesture. The clips are a function
of the dataset and the seed only, so evaluation and export rebuild the very clips the
split file names.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .classes import NUM_CLASSES, class_names
from .layouts import ClipRecord, DatasetError, DatasetIndex, scan_dataset
from .untrimmed import VideoLabels, background_gaps, group_videos

log = logging.getLogger(__name__)

BACKGROUND_NAME = "no gesture"
BACKGROUND_INDEX = NUM_CLASSES          # 32: after the official classes, in their order
BACKGROUND_SHARE = 0.25                 # default: a quarter as many background clips as labelled clips
BACKGROUND_MARGIN_S = 0.2               # keep off the labelled boundaries, which annotators place by eye


@dataclass(frozen=True)
class BackgroundConfig:
    clips: int | None = None            # background clips to cut; None: BACKGROUND_SHARE x labelled clips
    margin_s: float = BACKGROUND_MARGIN_S   # seconds kept clear on each side of a labelled interval
    seed: int = 0                       # which gaps, where, how long
    uses_rgb: bool = True               # the clips need video frames (rgb, fusion)
    uses_skeleton: bool = True          # the clips need per-frame keypoints (skeleton, fusion)

    def __post_init__(self) -> None:
        if self.clips is not None and self.clips < 1:
            raise ValueError(f"--background-clips must be at least 1, got {self.clips}")

    @classmethod
    def from_train_config(cls, d: dict, uses_rgb: bool, uses_skeleton: bool) -> "BackgroundConfig | None":
        """The run's background settings, from its saved training configuration (None: no background class)."""
        if not d.get("background"):
            return None
        return cls(d.get("background_clips"), seed=int(d.get("seed", 0)), uses_rgb=uses_rgb,
                   uses_skeleton=uses_skeleton)


def run_class_names(background: bool) -> list[str]:
    """The model's output classes: the 32 official ones, then "no gesture" with ``background``."""
    return class_names() + ([BACKGROUND_NAME] if background else [])


def background_index(names) -> int | None:
    """Index of the "no gesture" class in an artifact's class list, or None."""
    names = list(names)
    return names.index(BACKGROUND_NAME) if BACKGROUND_NAME in names else None


def _skeleton_frames(v: VideoLabels) -> set[int] | None:
    """Frame numbers with a per-frame JSON in the video's skeleton folder (one listdir, not a stat a frame)."""
    template = v.clips[0].keypoint_template if v.clips else None
    if template is None:
        return None
    folder = Path(template).parent
    try:
        names = os.listdir(folder)
    except OSError:
        return set()
    prefix, suffix = Path(template).name.split("{frame:012d}")
    frames = set()
    for n in names:
        if n.startswith(prefix) and n.endswith(suffix) and n[len(prefix):len(n) - len(suffix)].isdigit():
            frames.add(int(n[len(prefix):len(n) - len(suffix)]))
    return frames


def _runs(frames: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive runs of consecutive frame numbers in a sorted array."""
    if len(frames) == 0:
        return []
    breaks = np.flatnonzero(np.diff(frames) != 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(frames) - 1]])
    return [(int(frames[s]), int(frames[e])) for s, e in zip(starts, ends)]


def usable_gaps(v: VideoLabels, cfg: BackgroundConfig) -> tuple[list[tuple[int, int]], str | None]:
    """Gap segments of one video that hold what the model reads, or ([], why not)."""
    if not v.clips:
        return [], "no usable labelled interval"
    if v.num_frames is None:
        return [], "no video and no per-frame skeletons (its length is unknown)"
    if cfg.uses_rgb and v.video is None:
        return [], "no video file (the RGB stream reads gap frames from it)"
    gaps = background_gaps(v, int(round(cfg.margin_s * v.fps)))
    if not cfg.uses_skeleton:
        return gaps, None if gaps else "no frames outside the labelled intervals"
    have = _skeleton_frames(v) or set()
    frames = np.array(sorted(f for a, b in gaps for f in range(a, b + 1) if f in have), dtype=np.int64)
    segments = _runs(frames)
    if not segments:
        return [], "no per-frame OpenPose JSON outside the labelled intervals"
    return segments, None


def _pick(segments: list[tuple[int, int]], length: int, rng: np.random.Generator) -> tuple[int, int]:
    """A window of ``length`` frames inside one segment, uniformly over all places it fits."""
    sizes = np.array([b - a + 1 for a, b in segments])
    room = np.maximum(sizes - length + 1, 0)
    if room.sum() == 0:                       # nothing that long: the longest gap, whole
        a, b = segments[int(np.argmax(sizes))]
        return a, b
    k = int(rng.choice(len(segments), p=room / room.sum()))
    start = segments[k][0] + int(rng.integers(0, room[k]))
    return start, start + length - 1


def _missing_message(index: DatasetIndex, why: dict[str, str]) -> str:
    shown = "; ".join(f"video {vid}: {reason}" for vid, reason in list(why.items())[:5])
    more = f" (and {len(why) - 5} more videos)" if len(why) > 5 else ""
    return (f"{index.root}: --background cuts 'no gesture' clips from the frames between labelled intervals, "
            f"and no video offers any: {shown}{more}. The RGB stream needs videos/<id>.mp4; the skeleton "
            f"stream needs OpenPose JSON for every frame under skeleton/<id>/, or run `mgr extract-keypoints` "
            f"over the videos")


def cut_background_clips(index: DatasetIndex, cfg: BackgroundConfig,
                         videos: list[VideoLabels] | None = None) -> list[ClipRecord]:
    """The "no gesture" clips of an official-layout dataset (label BACKGROUND_INDEX)."""
    if index.layout != "official":
        raise DatasetError(f"{index.root}: --background needs the official layout (label CSV and long videos, "
                           f"README \"Data layouts\"); this folder is layout {index.layout!r}, whose clips are "
                           f"trimmed to the gesture")
    videos = group_videos(index) if videos is None else videos
    segments, why = {}, {}
    for v in videos:
        segs, reason = usable_gaps(v, cfg)
        if segs:
            segments[v.video_id] = (v, segs)
        else:
            why[v.video_id] = reason
    if not segments:
        raise DatasetError(_missing_message(index, why))
    for vid, reason in why.items():
        log.warning("video %s gives no background clips: %s", vid, reason)
    labelled = [c for v in videos for c in v.clips]
    lengths = np.array([c.num_frames for c in labelled])
    n = cfg.clips if cfg.clips is not None else max(1, int(round(BACKGROUND_SHARE * len(labelled))))
    weights = np.array([sum(b - a + 1 for a, b in segs) for _, segs in segments.values()], dtype=np.float64)
    rng = np.random.default_rng([cfg.seed, 32])
    keys = list(segments)
    out = []
    for k in range(n):
        v, segs = segments[keys[int(rng.choice(len(keys), p=weights / weights.sum()))]]
        first, last = _pick(segs, int(rng.choice(lengths)), rng)
        out.append(replace(v.clips[0], clip_id=f"{v.video_id}/bg{k + 1}", label=BACKGROUND_INDEX,
                           frame_range=(first, last)))
    return out


def scan_with_background(root: str, keypoints_root: str | None, cfg: BackgroundConfig | None) -> DatasetIndex:
    """``scan_dataset``, plus (with ``cfg``) the background clips, and without the labelled
    intervals that overlap an earlier one or run past their video (skipped with a warning)."""
    index = scan_dataset(root, keypoints_root)
    if cfg is None:
        return index
    if index.layout != "official":
        cut_background_clips(index, cfg, [])          # raises the layout error
    videos = group_videos(index, keypoints_root)
    for v in videos:
        for problem in v.problems:
            log.warning("skipped in training: %s", problem)
    labelled = [c for v in videos for c in v.clips]
    background = cut_background_clips(index, cfg, videos)
    problems = list(index.problems) + [p for v in videos for p in v.problems]
    return DatasetIndex(index.root, index.layout, labelled + background, problems)
