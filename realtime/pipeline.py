"""One inference step of the live loop: framing, pose, encode once, clip head over cached features.

Four frames go into the model, as in training, but training clips span a whole gesture
(1.57 s median in iMiGUE, DESIGN.md section 3) and four consecutive webcam frames span
0.13 s. So every step takes the current frame plus the cached frames nearest to
``window/3``, ``2*window/3`` and ``window`` seconds ago: the same evenly spaced positions
``sample_frame_indices`` picks in an evaluation clip. Each frame is encoded once, when it
arrives; a step runs only the clip head over the cached (T, 512) features.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from mgr.train.preprocess import KeypointStats, preprocess_rgb_frame, preprocess_skeleton, rescale_keypoints

from .body25 import FramingBox, center_crop_box, crop_frame, crop_to_frame
from .sources import Frame

log = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 1.6   # median iMiGUE micro-gesture (1.57 s), DESIGN.md section 3
STATUSES = ("ok", "uncertain", "warming up", "no person")


@dataclass(frozen=True)
class LiveConfig:
    window_s: float | None = None        # span of the 4 sampled frames; None: artifact's clip_seconds, else 1.6
    inference_fps: float | None = 10.0   # inference steps per second; None: every frame (replay)
    smooth: int = 1                      # moving average of probabilities over the last K steps
    threshold: float = 0.2               # top-1 probability below which the label is "uncertain"
    top_k: int = 5                       # classes shown and logged
    cache_features: bool = True          # encode each frame once (False: re-encode all T, the naive way)
    mirror: bool = False                 # selfie view: flip the display only, never the model input


@dataclass(frozen=True)
class Prediction:
    status: str                              # one of STATUSES
    top: tuple[tuple[str, float], ...]       # (class name, probability), best first; empty unless ok/uncertain
    keypoints: np.ndarray | None             # (25, 3) Body_25 in full-frame pixels, None without a person
    box: FramingBox                          # the framing crop in the full frame
    frame_index: int                         # frame the step ran on
    timestamp_ms: float                      # its timestamp
    captured_at: float                       # its capture time (perf_counter), for latency
    ms: dict = field(default_factory=dict)   # pose, encode, head milliseconds of this step


def resolve_window(window_s: float | None, metadata: dict) -> float:
    """The --window value, else the artifact's median clip duration, else 1.6 s."""
    for value in (window_s, metadata.get("clip_seconds")):
        if value is not None:
            if float(value) <= 0:
                raise ValueError(f"window must be a positive number of seconds, got {value}")
            return float(value)
    return DEFAULT_WINDOW_S


def target_times(t_now_ms: float, window_s: float, num_frames: int) -> np.ndarray:
    """Evenly spaced sample times over the window ending now, oldest first (ms)."""
    return t_now_ms - np.linspace(window_s * 1000.0, 0.0, num_frames)


def select_window(times_ms: list[float] | np.ndarray, t_now_ms: float, window_s: float,
                  num_frames: int) -> list[int] | None:
    """Indices of cached frames nearest to each target time, or None while warming up.

    Warming up: fewer than ``num_frames`` frames, or some target has no frame within half
    the spacing (the history does not yet cover the window, or has a gap without a person).
    """
    times = np.asarray(times_ms, dtype=np.float64)
    if len(times) < num_frames:
        return None
    spacing = window_s * 1000.0 / max(num_frames - 1, 1)
    picks = []
    for target in target_times(t_now_ms, window_s, num_frames):
        i = int(np.argmin(np.abs(times - target)))
        if abs(times[i] - target) > spacing / 2:
            return None
        picks.append(i)
    return picks


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def top_k(probs: np.ndarray, names: list[str], k: int) -> tuple[tuple[str, float], ...]:
    order = np.argsort(-probs, kind="stable")[:k]
    return tuple((names[i], float(probs[i])) for i in order)


class Smoother:
    """Moving average of the last ``k`` probability vectors (k=1: none)."""

    def __init__(self, k: int = 1):
        if k < 1:
            raise ValueError(f"smooth must be at least 1 step, got {k}")
        self._buf: deque = deque(maxlen=k)

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        self._buf.append(np.asarray(probs, dtype=np.float64))
        return np.mean(self._buf, axis=0)

    def reset(self) -> None:
        self._buf.clear()


class FrameHistory:
    """Frames of the last window: timestamp, cached feature (or preprocessed RGB), skeleton."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.times: list[float] = []
        self.rgb: list[np.ndarray | None] = []
        self.skeleton: list[np.ndarray] = []

    def add(self, t_ms: float, rgb: np.ndarray | None, kp_ref: np.ndarray) -> None:
        self.times.append(t_ms)
        self.rgb.append(rgb)
        self.skeleton.append(kp_ref)
        horizon = t_ms - self.window_s * 1000.0 * 1.5   # keep a margin beyond the window
        while self.times and self.times[0] < horizon:
            for lst in (self.times, self.rgb, self.skeleton):
                lst.pop(0)

    def reset(self) -> None:
        self.times.clear()
        self.rgb.clear()
        self.skeleton.clear()
