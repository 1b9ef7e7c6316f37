"""`mgr evaluate-stream`: events of held-out untrimmed videos against their labelled intervals.

Each video of an official-layout dataset goes through the same driver, Recognizer and event
decoder as `mgr replay` (``runner.run_replay``). Frames come from the video with MediaPipe
pose, or, for a skeleton-only model, from the dataset's own per-frame OpenPose skeletons
(blank frames of the video's size carry the timing; the skeleton file of each frame stands in
for pose). The events are then matched to the labels by ``stream_metrics``.

Held-out videos: with ``part`` "test" (or "val", "train") the videos all of whose labelled
clips the run's split puts in that part; a cross-subject split holds whole videos out, a
clip-level random split usually none (an error then says so). "all" takes every video.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from mgr.train.keypoints_io import read_openpose_json
from mgr.train.layouts import DatasetError, scan_dataset
from mgr.train.split import resolve_split
from mgr.train.untrimmed import VideoLabels, group_videos

from .body25 import center_crop_box
from .events import EventConfig, decode_events
from .pipeline import LiveConfig, Recognizer
from .runner import Outputs, run_replay
from .sources import Frame, VideoFileSource
from .stream_metrics import LabelInterval, score_stream

log = logging.getLogger(__name__)

SOURCES = ("auto", "video", "skeleton")
PARTS = ("test", "val", "train", "all")
DEFAULT_IOUS = (0.3, 0.5)


@dataclass(frozen=True)
class StreamEvalConfig:
    data: Path                              # official-layout dataset folder
    part: str = "test"                      # which videos: test | val | train (of the run's split) | all
    split_file: Path | None = None          # the run's split.json (default: beside the model)
    ious: tuple[float, ...] = DEFAULT_IOUS  # temporal IoU thresholds of a hit
    source: str = "auto"                    # auto | video | skeleton (per-frame OpenPose JSON, skeleton models)
    live: LiveConfig = field(default_factory=lambda: LiveConfig(inference_fps=None))   # the replay's step settings
    keypoints_root: Path | None = None      # parallel skeleton tree, if not DATA/skeleton

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise ValueError(f"unknown --split {self.part!r}; choose one of {', '.join(PARTS)}")
        if self.source not in SOURCES:
            raise ValueError(f"unknown --source {self.source!r}; choose one of {', '.join(SOURCES)}")
        if not self.ious or not all(0.0 < i <= 1.0 for i in self.ious):
            raise ValueError(f"--iou must be in (0, 1], got {list(self.ious)}")


# ----------------------------------------------------------------------------- skeleton-file input
class BlankVideo:
    """A frame source of blank frames at a video's size and rate: the timing of a video without its pixels."""

    def __init__(self, name: str, num_frames: int, fps: float, size: tuple[int, int]):
        self.name, self.fps, self.frame_count, self.size = name, fps, num_frames, size
        self.dropped, self.end_reason = 0, None
        self._image = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        self._next = 0

    def read(self) -> Frame | None:
        if self._next >= self.frame_count:
            self.end_reason = "end of input"
            return None
        i, self._next = self._next, self._next + 1
        return Frame(self._image, i, i * 1000.0 / self.fps, time.perf_counter())

    def close(self) -> None:
        pass


class SkeletonFilePose:
    """A pose stage that reads each frame's OpenPose JSON instead of running a detector.

    Keypoints are in the video's pixels; the loop hands the stage its centre crop, so they are
    shifted into the crop the way MediaPipe's would be.
    """

    def __init__(self, template: str, fps: float, size: tuple[int, int], reference_size):
        self.template, self.fps = template, fps
        self.box = center_crop_box(size, reference_size)

    def __call__(self, crop_rgb: np.ndarray, timestamp_ms: float) -> np.ndarray | None:
        frame = int(round(timestamp_ms * self.fps / 1000.0))
        kp, people = read_openpose_json(self.template.format(frame=frame))
        if people == 0 or not (kp[:, 2] > 0).any():
            return None
        kp = kp.astype(np.float32).copy()
        valid = kp[:, 2] > 0
        kp[valid, 0] -= self.box.x0
        kp[valid, 1] -= self.box.y0
        return kp

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


def has_frame_skeletons(v: VideoLabels) -> bool:
    """The video's skeleton folder holds a JSON for (nearly) every frame: a stream can be read from it."""
    if not v.clips or v.num_frames is None:
        return False
    folder = Path(v.clips[0].keypoint_template).parent
    n = sum(1 for _ in folder.glob("*_keypoints.json")) if folder.is_dir() else 0
    return n >= 0.9 * v.num_frames


def choose_source(v: VideoLabels, asked: str, skeleton_only: bool) -> str:
    """Which input a video is read from, or a ValueError naming the video and what is missing."""
    skel_ok = skeleton_only and has_frame_skeletons(v)
    if asked == "skeleton" or (asked == "auto" and skel_ok):
        if not skeleton_only:
            raise ValueError("--source skeleton reads only keypoints: it needs a skeleton-only model "
                             "(this one also reads RGB frames)")
        if not skel_ok:
            raise ValueError(f"video {v.video_id}: no per-frame OpenPose JSON under "
                             f"{Path(v.clips[0].keypoint_template).parent if v.clips else 'skeleton/'}; "
                             f"run `mgr extract-keypoints` over the videos, or use --source video")
        return "skeleton"
    if v.video is None:
        raise ValueError(f"video {v.video_id}: no video file under videos/ (and no per-frame skeletons a "
                         f"skeleton-only model could read instead)")
    return "video"


# ----------------------------------------------------------------------------- selection
def held_out_videos(videos: list[VideoLabels], cfg: StreamEvalConfig, beside: list[Path]) -> tuple[list[VideoLabels], str]:
    """The videos to score and where that choice came from."""
    videos = [v for v in videos if v.clips]
    if cfg.part == "all":
        return videos, "every video"
    split, source = resolve_split(cfg.split_file, beside, fallback="error", new_split_flag="--split all")
    part = set(split[cfg.part])
    chosen = [v for v in videos if all(c.clip_id in part for c in v.clips)]
    if not chosen:
        raise ValueError(f"no video has all its labelled clips in the {cfg.part!r} part of {source}: a clip-level "
                         f"(random) split holds out clips, not videos. Train with --split cross-subject (whole "
                         f"subjects held out), or pass --split all to score every video (not held out)")
    return chosen, f"{cfg.part} part of {source}"


def label_intervals(v: VideoLabels, names: list[str]) -> list[LabelInterval]:
    """A video's labelled gestures in seconds (frame times, as events are stamped)."""
    return [LabelInterval(v.video_id, names[c.label], c.label, c.frame_range[0] / v.fps, c.frame_range[1] / v.fps)
            for c in v.clips]


# ----------------------------------------------------------------------------- running
@dataclass
class VideoRun:
    video: VideoLabels
    source: str                                         # "video" or "skeleton"
    events: list = field(default_factory=list)         # GestureEvents, in order
    steps: list = field(default_factory=list)          # (evidence s, frame, probs or None, step s): offline decoding
    seconds: float = 0.0                               # wall time


def run_video(backend, make_pose: Callable[[], object], v: VideoLabels, source: str, live: LiveConfig) -> VideoRun:
    """One video through ``run_replay`` with a fresh Recognizer; its events and its step stream."""
    run = VideoRun(v, source)
    prep = backend.metadata.preprocessing
    if source == "skeleton":
        size = v.clips[0].source_size
        frames = BlankVideo(v.video_id, v.num_frames, v.fps, size)
        pose = SkeletonFilePose(v.clips[0].keypoint_template, v.fps, size, prep.reference_size)
    else:
        frames, pose = VideoFileSource(v.video), make_pose()
    t0 = time.perf_counter()
    try:
        recognizer = Recognizer(backend, pose, live)
        try:
            outputs = Outputs(log_timings=False, collected=run.events,
                              on_step=lambda p: run.steps.append((*p.evidence, p.probs, p.timestamp_ms / 1000.0)))
            run_replay(frames, recognizer, live, outputs)
        finally:
            recognizer.close()
    finally:
        frames.close()
        pose.close()
    run.seconds = time.perf_counter() - t0
    return run


def iter_runs(backend, make_pose, cfg: StreamEvalConfig, beside: list[Path]) -> tuple[list[VideoLabels], str, Iterator[VideoRun]]:
    """Check every chosen video before the first one runs, then run them one by one."""
    index = scan_dataset(cfg.data, cfg.keypoints_root)
    if index.layout != "official":
        raise DatasetError(f"{cfg.data}: evaluate-stream needs the official layout (label CSV and untrimmed "
                           f"videos); this folder is layout {index.layout!r}, whose clips are already trimmed")
    videos, chosen_from = held_out_videos(group_videos(index, cfg.keypoints_root), cfg, beside)
    skeleton_only = not backend.uses_rgb
    sources = [choose_source(v, cfg.source, skeleton_only) for v in videos]
    return videos, chosen_from, (run_video(backend, make_pose, v, s, cfg.live) for v, s in zip(videos, sources))


def score_runs(runs: list[VideoRun], names: list[str], ious, events: EventConfig | None = None):
    """Scores of the runs' events (or of their steps decoded again with ``events``: the tuning path)."""
    pairs = []
    bg = names.index("no gesture") if "no gesture" in names else None
    for r in runs:
        evs = r.events if events is None else decode_events(r.steps, events, names, bg)
        pairs.append((evs, label_intervals(r.video, names)))
    return score_stream(pairs, tuple(ious), names)


def tune_events(runs: list[VideoRun], names: list[str], base: EventConfig, iou: float = 0.5) -> list[dict]:
    """F1 at ``iou`` over a grid of decoder settings, best first (each run decoded again, offline)."""
    rows = []
    for enter in (0.3, 0.4, 0.5, 0.6, 0.7):
        for exit_ in (0.15, 0.25, 0.35, 0.5):
            if exit_ > enter:
                continue
            for min_enter in (0.0, 0.12, 0.24, 0.4):
                for min_dur in (0.2, 0.4, 0.6, 0.8, 1.0):
                    for merge in (0.2, 0.4, 0.8):
                        cfg = replace(base, enter=enter, exit=exit_, min_enter_s=min_enter, min_duration_s=min_dur,
                                      merge_gap_s=merge)
                        s = score_runs(runs, names, (iou,), cfg).at(iou)
                        rows.append({"config": cfg.__dict__.copy(), "f1": s.f1, "delay_p50": s.delay_p50})
    rows.sort(key=lambda r: (-r["f1"], r["delay_p50"] if r["delay_p50"] is not None else 1e9))
    return rows
