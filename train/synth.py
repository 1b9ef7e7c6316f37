"""Synthetic iMiGUE: stick figures making class-dependent micro-movements.

Writes layout 1 of README "Data layouts" (``ROOT/<class id>/<clip>.<frame>.jpg``, 320x180)
with OpenPose Body_25 JSON next to each frame. Each class is a hand (right, left, both)
moving to one of eleven body targets (head top, forehead, face, mouth, chin, ear, neck,
chest, opposite shoulder, belly, thigh) with a class-specific rubbing frequency. It has
noise, missing joints, empty frames and variable lengths. It is learnable and it is NOT
iMiGUE: nothing measured on it says anything about real micro-gestures.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .classes import NUM_CLASSES, imigue_classes
from .keypoints_io import write_openpose_json
from .layout import EDGES, JOINT_INDEX as J, NUM_JOINTS, UPPER_BODY

log = logging.getLogger(__name__)

FRAME_SIZE = (320, 180)  # (w, h) of the image-level iMiGUE set
# Hand targets relative to the neck, in units of shoulder half-width (x: subject's right is -x in the image)
TARGETS = np.array([(0.0, -2.6), (0.2, -2.1), (0.5, -1.6), (0.0, -1.25), (0.1, -0.95), (1.0, -1.6),
                    (0.3, -0.3), (0.1, 0.7), (-1.0, 0.05), (0.2, 2.0), (0.8, 3.0)], dtype=np.float32)


@dataclass(frozen=True)
class SynthConfig:
    clips: int = 320                    # total clips, spread over the 32 classes round-robin
    min_frames: int = 1                 # shortest clip
    max_frames: int = 12                # longest clip
    seed: int = 0                       # everything is a function of the seed
    missing_joint_rate: float = 0.05    # joints dropped to confidence 0
    empty_frame_rate: float = 0.03      # frames where "OpenPose" found nobody
    jitter_px: float = 1.5              # keypoint noise, pixels


def rest_pose(rng: np.random.Generator) -> np.ndarray:
    """A seated upper body, (25, 3) pixels of a 320x180 frame, random placement and scale."""
    cx, cy = 160 + rng.uniform(-10, 10), 78 + rng.uniform(-5, 5)
    s = 30 * rng.uniform(0.92, 1.08)  # shoulder half-width, px
    kp = np.zeros((NUM_JOINTS, 3), dtype=np.float32)
    pts = {"Neck": (0, 0), "Nose": (0, -1.3), "REye": (-0.25, -1.5), "LEye": (0.25, -1.5),
           "REar": (-0.55, -1.35), "LEar": (0.55, -1.35), "RShoulder": (-1, 0.05), "LShoulder": (1, 0.05),
           "RElbow": (-1.25, 1.45), "LElbow": (1.25, 1.45), "RWrist": (-0.9, 2.6), "LWrist": (0.9, 2.6),
           "MidHip": (0, 2.9), "RHip": (-0.6, 2.9), "LHip": (0.6, 2.9)}
    for name, (dx, dy) in pts.items():
        kp[J[name]] = (cx + dx * s, cy + dy * s, 1.0)
    return kp


def class_motion(label: int) -> tuple[tuple[str, ...], np.ndarray, float]:
    """Which hands move, the target (units of s, for the subject's left hand), rubbing freq (cycles/clip)."""
    hands = (("L",), ("R",), ("L", "R"))[label % 3]
    target = TARGETS[(label // 3) % len(TARGETS)]
    freq = 1.0 + (label % 4) * 0.75
    return hands, target, freq


def animate(label: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 25, 3) keypoints of one clip of class ``label``."""
    base = rest_pose(rng)
    neck, s = base[J["Neck"], :2], (base[J["LShoulder"], 0] - base[J["RShoulder"], 0]) / 2
    hands, target, freq = class_motion(label)
    phase = rng.uniform(0, 2 * np.pi)
    out = np.repeat(base[None], n, axis=0)
    for t in range(n):
        u = (t + 1) / n if n > 1 else 1.0
        reach = min(1.0, 4.0 * u)  # arrives at the target within the first quarter of the clip
        rub = np.array([np.cos(2 * np.pi * freq * u + phase), np.sin(2 * np.pi * freq * u + phase)]) * 0.15 * s
        sway = rng.normal(0, 0.6, size=2)
        for side in hands:
            sign = 1.0 if side == "L" else -1.0
            goal = neck + np.array([sign * target[0], target[1]]) * s + rub
            wrist, elbow = J[f"{side}Wrist"], J[f"{side}Elbow"]
            out[t, wrist, :2] = (1 - reach) * base[wrist, :2] + reach * goal
            out[t, elbow, :2] = (1 - reach) * base[elbow, :2] + reach * (0.5 * goal + 0.5 * base[J[f"{side}Shoulder"], :2]
                                                                         + np.array([sign * 0.6 * s, 0.7 * s]))
        out[t, :, :2] += sway
    return out


def add_detector_noise(kp: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Jitter, confidences, dropped joints and empty frames, as a pose detector would give."""
    kp = kp.copy()
    upper = np.zeros(NUM_JOINTS, dtype=bool)
    upper[list(UPPER_BODY)] = True
    kp[..., :2] += rng.normal(0, cfg.jitter_px, size=kp[..., :2].shape)
    kp[..., 2] = np.where(upper, rng.uniform(0.45, 0.98, size=kp.shape[:2]), 0.0)
    drop = rng.random(kp.shape[:2]) < cfg.missing_joint_rate
    kp[drop] = 0.0
    kp[:, ~upper] = 0.0
    empty = rng.random(kp.shape[0]) < cfg.empty_frame_rate
    kp[empty] = 0.0
    return kp


def render(kp_true: np.ndarray, rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """Draw one frame (BGR uint8, 180x320) of the noiseless pose."""
    img = background.copy()
    noise = rng.normal(0, 6, size=img.shape)
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    pts = kp_true[:, :2]
    for a, b in EDGES:
        if a in UPPER_BODY and b in UPPER_BODY:
            color = (40, 160, 220) if a in (J["RShoulder"], J["RElbow"], J["RWrist"]) or b in (J["RElbow"], J["RWrist"]) \
                else (200, 120, 60) if a in (J["LShoulder"], J["LElbow"], J["LWrist"]) or b in (J["LElbow"], J["LWrist"]) \
                else (90, 90, 90)
            cv2.line(img, tuple(int(v) for v in pts[a]), tuple(int(v) for v in pts[b]), color, 5, cv2.LINE_AA)
    head = pts[J["Nose"]]
    cv2.circle(img, (int(head[0]), int(head[1]) - 4), 17, (150, 170, 210), -1, cv2.LINE_AA)
    for w in ("RWrist", "LWrist"):
        cv2.circle(img, tuple(int(v) for v in pts[J[w]]), 6, (60, 200, 60), -1, cv2.LINE_AA)
    return img


def clip_lengths(cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    lengths = rng.integers(max(cfg.min_frames, 4), cfg.max_frames + 1, size=cfg.clips)
    short = rng.random(cfg.clips) < 0.08  # a few very short clips exercise cyclic repetition
    lengths[short] = rng.integers(cfg.min_frames, 4, size=short.sum())
    return lengths


SYNTH_README = """# Synthetic iMiGUE (generated by `mgr synth`)

THIS IS SYNTHETIC DATA. It is not iMiGUE and says nothing about real micro-gestures.

Stick figures make class-dependent hand movements, rendered as 320x180 JPEG frames in the
image-level layout (`<class id>/<clip>.<frame>.jpg`) with OpenPose Body_25 JSON next to
each frame (`<clip>.<frame>_keypoints.json`). It has keypoint noise, dropped joints,
empty frames and clips of {min_frames} to {max_frames} frames.

clips: {clips}, seed: {seed}. Class names are the official iMiGUE names, used as labels only.
"""


def generate(out: str | Path, cfg: SynthConfig = SynthConfig(), progress=None) -> Path:
    """Write the dataset under ``out``. ``progress(done, total)`` is called per clip."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    lengths = clip_lengths(cfg, rng)
    classes = imigue_classes()
    for clip in range(cfg.clips):
        label = clip % NUM_CLASSES
        crng = np.random.default_rng([cfg.seed, clip])
        folder = out / str(classes[label].id)
        folder.mkdir(exist_ok=True)
        kp_true = animate(label, int(lengths[clip]), crng)
        kp_obs = add_detector_noise(kp_true, cfg, crng)
        bg = np.full((FRAME_SIZE[1], FRAME_SIZE[0], 3), crng.integers(185, 200, size=3), dtype=np.uint8)
        for f in range(len(kp_true)):
            stem = f"{clip + 1}.{f + 1}"
            cv2.imwrite(str(folder / f"{stem}.jpg"), render(kp_true[f], crng, bg), [cv2.IMWRITE_JPEG_QUALITY, 90])
            people = [] if kp_obs[f, :, 2].max() == 0 else [kp_obs[f]]
            write_openpose_json(folder / f"{stem}_keypoints.json", people)
        if progress is not None:
            progress(clip + 1, cfg.clips)
    (out / "README.md").write_text(SYNTH_README.format(**cfg.__dict__))
    log.info("wrote %d synthetic clips to %s", cfg.clips, out)
    return out
