"""The pose stage: MediaPipe Tasks PoseLandmarker, one followed subject, Body_25 out.

Modes: VIDEO (tracking between frames, monotonic millisecond timestamps) for files and,
with timestamps from the monotonic clock, for cameras too: the live loop already hands the
stage only the newest frame, so LIVE_STREAM's asynchronous callbacks would add a queue and
a thread without dropping anything more. IMAGE mode (every image on its own) is for sparse
image datasets, where consecutive files are not consecutive moments.

The landmarker holds native resources: close it (``with`` or ``close()``); left to the
garbage collector at interpreter exit, MediaPipe 1.2 prints a TypeError.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .body25 import NUM_MEDIAPIPE_LANDMARKS, mediapipe_to_body25

log = logging.getLogger(__name__)

POSE_MODES = ("video", "image")


@dataclass(frozen=True)
class PoseConfig:
    model_path: Path                        # MediaPipe pose_landmarker .task file
    mode: str = "video"                     # video (tracking) | image (each frame alone)
    num_poses: int = 1                      # people the detector may return; >1: SubjectTracker picks one
    min_detection_confidence: float = 0.5   # person detector score
    min_presence_confidence: float = 0.5    # landmark model: a person is in the ROI
    min_tracking_confidence: float = 0.5    # below this VIDEO mode re-detects


def landmarks_to_array(pose_landmarks) -> np.ndarray:
    """PoseLandmarkerResult.pose_landmarks -> (P, 33, 3) float32 of x, y, visibility."""
    out = np.zeros((len(pose_landmarks), NUM_MEDIAPIPE_LANDMARKS, 3), dtype=np.float32)
    for p, person in enumerate(pose_landmarks):
        for i, lm in enumerate(person[:NUM_MEDIAPIPE_LANDMARKS]):
            vis = lm.visibility if lm.visibility is not None else 0.0
            out[p, i] = (lm.x, lm.y, vis)
    return out


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence the C++ log lines MediaPipe/LiteRT print while a model loads or closes (~50
    INFO/WARNING lines each time). Python exceptions still carry the error. ``MGR_NATIVE_LOGS=1``
    keeps them."""
    if os.environ.get("MGR_NATIVE_LOGS"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class PoseEstimator:
    """A PoseLandmarker wrapper: numpy RGB image in, (P, 33, 3) normalised landmarks out."""

    def __init__(self, cfg: PoseConfig):
        if cfg.mode not in POSE_MODES:
            raise ValueError(f"unknown pose mode {cfg.mode!r}; choose one of {', '.join(POSE_MODES)}")
        if cfg.num_poses < 1:
            raise ValueError(f"num_poses must be at least 1, got {cfg.num_poses}")
        self.cfg = cfg
        self._landmarker = None
        self._last_ts = -1
        self._open()

    def _open(self) -> None:
        import mediapipe as mp  # heavy import, only where pose runs
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        mode = vision.RunningMode.VIDEO if self.cfg.mode == "video" else vision.RunningMode.IMAGE
        opts = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.cfg.model_path)),
            running_mode=mode, num_poses=self.cfg.num_poses,
            min_pose_detection_confidence=self.cfg.min_detection_confidence,
            min_pose_presence_confidence=self.cfg.min_presence_confidence,
            min_tracking_confidence=self.cfg.min_tracking_confidence)
        try:
            with quiet_native_stderr():
                self._landmarker = vision.PoseLandmarker.create_from_options(opts)
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"{self.cfg.model_path}: not a usable MediaPipe pose landmarker model ({e})") from e
        self._last_ts = -1

    def __call__(self, image_rgb: np.ndarray, timestamp_ms: int | float | None = None) -> np.ndarray:
        if self._landmarker is None:
            raise RuntimeError("PoseEstimator is closed")
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(image_rgb))
        if self.cfg.mode == "image":
            result = self._landmarker.detect(image)
        else:
            # VIDEO mode rejects timestamps that do not increase; files can repeat one.
            ts = max(int(timestamp_ms or 0), self._last_ts + 1)
            self._last_ts = ts
            result = self._landmarker.detect_for_video(image, ts)
        return landmarks_to_array(result.pose_landmarks)

    def reset(self) -> None:
        """Forget tracking state and the timestamp clock (a new video starts)."""
        self.close()
        self._open()

    def close(self) -> None:
        if self._landmarker is not None:
            with quiet_native_stderr():
                self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> "PoseEstimator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------- subject
UPPER_LANDMARKS = 25  # MediaPipe 0-24: face, shoulders, arms, hips (legs are often out of view)


def person_boxes(people: np.ndarray, min_visibility: float = 0.5) -> np.ndarray:
    """(P, 33, 3) normalised landmarks -> (P, 4) boxes x0, y0, x1, y1 of each person's size.

    Only visible upper-body landmarks count, clipped to the image: MediaPipe extrapolates
    legs below the frame with high visibility, which would make a seated person "larger".
    """
    boxes = np.zeros((len(people), 4), dtype=np.float32)
    for p, lm in enumerate(people):
        upper = lm[:UPPER_LANDMARKS]
        pts = upper[upper[:, 2] >= min_visibility][:, :2]
        if len(pts) == 0:
            pts = upper[:, :2]
        pts = np.clip(pts, 0.0, 1.0)
        boxes[p] = (*pts.min(axis=0), *pts.max(axis=0))
    return boxes


def box_area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.array([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    i = float(box_area(inter))
    union = float(box_area(a) + box_area(b)) - i
    return i / union if union > 0 else 0.0


class SubjectTracker:
    """Follow one person: the largest at first, then the same one while they stay.

    The followed person is the candidate overlapping last frame's box most (IoU >= ``min_iou``),
    unless someone else is ``switch_ratio`` times larger (a person stepping in front).
    With no match, the largest person is taken. ``reset()`` forgets the subject.
    """

    def __init__(self, min_iou: float = 0.3, switch_ratio: float = 2.0):
        self.min_iou = min_iou
        self.switch_ratio = switch_ratio
        self._box: np.ndarray | None = None

    def __call__(self, people: np.ndarray) -> int | None:
        """Index of the subject among (P, 33, 3) people, or None when P == 0."""
        if len(people) == 0:
            self._box = None
            return None
        boxes = person_boxes(people)
        areas = box_area(boxes)
        largest = int(np.argmax(areas))
        choice = largest
        if self._box is not None:
            ious = [box_iou(self._box, b) for b in boxes]
            best = int(np.argmax(ious))
            if ious[best] >= self.min_iou and areas[largest] < self.switch_ratio * areas[best]:
                choice = best
        self._box = boxes[choice]
        return choice

    def reset(self) -> None:
        self._box = None


class PoseStage:
    """Callable stage: RGB image (already framed) -> Body_25 (25, 3) in its pixels, or None."""

    def __init__(self, estimator: PoseEstimator, tracker: SubjectTracker | None = None):
        self.estimator = estimator
        self.tracker = tracker if tracker is not None else SubjectTracker()

    def __call__(self, image_rgb: np.ndarray, timestamp_ms: float | None = None) -> np.ndarray | None:
        people = self.estimator(image_rgb, timestamp_ms)
        idx = self.tracker(people)
        if idx is None:
            return None
        h, w = image_rgb.shape[:2]
        return mediapipe_to_body25(people[idx], w, h)

    def reset(self) -> None:
        self.estimator.reset()
        self.tracker.reset()

    def close(self) -> None:
        self.estimator.close()
