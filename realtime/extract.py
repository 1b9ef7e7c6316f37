"""`mgr extract-keypoints`: MediaPipe pose + the Body_25 adapter over a whole dataset.

Writes OpenPose-format JSON (``<image stem>_keypoints.json``) in a tree that mirrors the
input, so ``mgr train --keypoints OUT`` reads it like OpenPose output. Keypoints are in
pixels of the image the pose ran on, as OpenPose writes them; training rescales them to
the reference frame like any OpenPose file. One person per file: the subject the live loop
would follow (the largest). A frame without a person gets a file with no people.

Images (layouts 1 and 2 of README "Data layouts", any depth) run in IMAGE mode: frames of
those sets are sparse, so neighbours are not consecutive moments. A video runs in VIDEO
mode (tracking) and writes ``OUT/<video stem>/<video stem>_<frame:012d>_keypoints.json``:
the official release's skeleton layout, one folder per video id wherever the video sits
(``videos/298.mp4`` too), so ``mgr train DATA --keypoints OUT`` finds it. A ``.complete``
marker makes a video resumable.
Work is spread over processes (spawned: MediaPipe's threads and fork do not mix).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import cv2

from mgr.train.keypoints_io import KEYPOINTS_SUFFIX, write_openpose_json

from .pose import PoseConfig, PoseEstimator, PoseStage
from .sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, natural_key

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".complete"


@dataclass(frozen=True)
class ExtractConfig:
    data: Path              # dataset root (image trees and/or videos)
    out: Path               # keypoint tree to write (mirrors ``data``)
    pose: PoseConfig        # pose model and detector settings (mode is chosen per input kind)
    workers: int = 1        # processes; 1 runs in this process
    chunk: int = 16         # images per task


@dataclass
class ExtractSummary:
    frames: int = 0                                   # frames with a JSON written this run
    skipped: int = 0                                  # frames already done (resumed)
    no_person: list = field(default_factory=list)     # frames written with no person (paths)
    unreadable: list = field(default_factory=list)    # files that could not be read (paths)

    def merge(self, other: "ExtractSummary") -> None:
        self.frames += other.frames
        self.skipped += other.skipped
        self.no_person += other.no_person
        self.unreadable += other.unreadable


def find_inputs(data: Path) -> tuple[list[Path], list[Path]]:
    """Every image and every video under ``data``, in natural order."""
    if not data.is_dir():
        raise ValueError(f"dataset folder not found: {data}")
    images, videos = [], []
    for root, dirs, files in os.walk(data):
        dirs.sort(key=lambda d: natural_key(Path(d)))
        for name in sorted(files, key=lambda f: natural_key(Path(f))):
            suffix = Path(name).suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                images.append(Path(root) / name)
            elif suffix in VIDEO_SUFFIXES:
                videos.append(Path(root) / name)
    return images, videos


def image_output(image: Path, data: Path, out: Path) -> Path:
    rel = image.relative_to(data)
    return out / rel.parent / f"{image.stem}{KEYPOINTS_SUFFIX}"


def video_output_dir(video: Path, out: Path) -> Path:
    """Official layout: one folder per video id, not mirrored (the reader looks up OUT/<video>/)."""
    return out / video.stem


# ----------------------------------------------------------------------------- work (any process)
_STAGE: PoseStage | None = None


def _init_worker(pose_cfg: PoseConfig) -> None:
    """Per-process IMAGE-mode pose stage, closed at process exit (MediaPipe needs the close)."""
    global _STAGE
    _STAGE = PoseStage(PoseEstimator(replace(pose_cfg, mode="image")))
    mp.util.Finalize(None, _close_worker, exitpriority=10)


def _close_worker() -> None:
    global _STAGE
    if _STAGE is not None:
        _STAGE.close()
        _STAGE = None


def _extract_one(stage: PoseStage, image_bgr, out_path: Path, timestamp_ms: float | None,
                 summary: ExtractSummary, label: str) -> None:
    if stage.estimator.cfg.mode == "image":
        stage.tracker.reset()   # independent images: no subject to follow between them
    kp = stage(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), timestamp_ms)
    write_openpose_json(out_path, [] if kp is None else [kp])
    summary.frames += 1
    if kp is None:
        summary.no_person.append(label)


def extract_images(pairs: list[tuple[str, str]]) -> ExtractSummary:
    """(image path, output path) pairs through this process's pose stage."""
    summary = ExtractSummary()
    for src, dst in pairs:
        image = cv2.imread(src, cv2.IMREAD_COLOR)
        if image is None:
            summary.unreadable.append(src)
            continue
        _extract_one(_STAGE, image, Path(dst), None, summary, src)
    return summary


def extract_video(video: str, out_dir: str, pose_cfg: PoseConfig) -> ExtractSummary:
    """Every frame of one video in VIDEO mode (tracking), then the completion marker."""
    summary, out = ExtractSummary(), Path(out_dir)
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        summary.unreadable.append(video)
        return summary
    stem, index = Path(video).stem, 0
    with PoseEstimator(replace(pose_cfg, mode="video")) as estimator:
        stage = PoseStage(estimator)
        while True:
            ok, image = cap.read()
            if not ok:
                break
            ts = cap.get(cv2.CAP_PROP_POS_MSEC)
            _extract_one(stage, image, out / f"{stem}_{index:012d}{KEYPOINTS_SUFFIX}", ts, summary,
                         f"{video}#{index}")
            index += 1
    cap.release()
    if index == 0:
        summary.unreadable.append(video)
    else:
        (out / COMPLETE_MARKER).write_text(f"{index}\n")
    return summary


# ----------------------------------------------------------------------------- orchestration
@dataclass(frozen=True)
class ExtractPlan:
    image_pairs: list         # (image, output json) still to do
    videos: list              # (video, output dir, frame count) still to do
    skipped: int              # frames already done
    total: int                # frames to process this run (videos by their container count)


def plan_extract(cfg: ExtractConfig) -> ExtractPlan:
    """What is left to do: outputs that exist (or completed videos) are skipped."""
    images, videos = find_inputs(cfg.data)
    if not images and not videos:
        raise ValueError(f"{cfg.data}: no images ({', '.join(IMAGE_SUFFIXES)}) or videos "
                         f"({', '.join(VIDEO_SUFFIXES)}) found")
    pairs, skipped = [], 0
    for img in images:
        dst = image_output(img, cfg.data, cfg.out)
        if dst.is_file():
            skipped += 1
        else:
            pairs.append((str(img), str(dst)))
    _check_unique_stems(videos)
    todo = []
    for vid in videos:
        out_dir = video_output_dir(vid, cfg.out)
        count = _frame_count(vid)
        if (out_dir / COMPLETE_MARKER).is_file():
            skipped += count
        else:
            todo.append((str(vid), str(out_dir), count))
    return ExtractPlan(pairs, todo, skipped, len(pairs) + sum(c for _, _, c in todo))


def _check_unique_stems(videos: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for v in videos:
        if v.stem in seen:
            raise ValueError(f"two videos share the id {v.stem!r} ({seen[v.stem]} and {v}); their keypoint "
                             f"folders would collide in OUT/{v.stem}/: rename one")
        seen[v.stem] = v


def _frame_count(video: Path) -> int:
    cap = cv2.VideoCapture(str(video))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
    cap.release()
    return n


def _tasks(plan: ExtractPlan, cfg: ExtractConfig) -> Iterator[tuple[Callable, tuple, int]]:
    """(function, args, frames it covers) for every unit of work."""
    for i in range(0, len(plan.image_pairs), cfg.chunk):
        chunk = plan.image_pairs[i:i + cfg.chunk]
        yield extract_images, (chunk,), len(chunk)
    for vid, out_dir, count in plan.videos:
        yield extract_video, (vid, out_dir, cfg.pose), count


def run_extract(cfg: ExtractConfig, plan: ExtractPlan | None = None,
                on_progress: Callable[[int], None] | None = None) -> ExtractSummary:
    """Do the plan (``plan_extract(cfg)`` if not given); ``on_progress(frames)`` after each task."""
    plan = plan if plan is not None else plan_extract(cfg)
    summary = ExtractSummary(skipped=plan.skipped)
    if cfg.workers <= 1:
        _init_worker(cfg.pose)
        try:
            for fn, args, n in _tasks(plan, cfg):
                summary.merge(fn(*args))
                if on_progress is not None:
                    on_progress(n)
        finally:
            _close_worker()
        return summary
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(cfg.workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(cfg.pose,)) as pool:
        futures: list[tuple[Future, int]] = [(pool.submit(fn, *args), n) for fn, args, n in _tasks(plan, cfg)]
        try:
            for fut, n in futures:
                summary.merge(fut.result())
                if on_progress is not None:
                    on_progress(n)
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)  # finished files stay; a rerun resumes
            raise
    return summary
