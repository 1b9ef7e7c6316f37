"""Synthetic iMiGUE: stick figures making class-dependent micro-movements.

Two outputs (README "Data layouts"):
- trimmed, :func:`generate`: layout 1 (``ROOT/<class id>/<clip>.<frame>.jpg``, 320x180) with
  OpenPose Body_25 JSON next to each frame, one clip per gesture;
- untrimmed, :func:`generate_untrimmed`: layout 3, the official one (``labels.csv``,
  ``videos/<id>.mp4``, ``skeleton/<id>/<id>_<frame:012d>_keypoints.json`` for every frame,
  ``protocol.json``): videos of tens of seconds where idle stretches (breathing, sway, small
  fidgets) alternate with gestures that start and end at rest.

Each class is a hand (right, left, both) moving to one of eleven body targets (head top,
forehead, face, mouth, chin, ear, neck, chest, opposite shoulder, belly, thigh) with a
class-specific rubbing frequency. It has noise, missing joints, empty frames and variable
lengths. It is learnable and it is NOT iMiGUE: nothing measured on it says anything about
real micro-gestures.
"""
from __future__ import annotations

import csv
import io
import logging
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_write, atomic_write_json, atomic_write_text
from .classes import NUM_CLASSES, imigue_classes
from .keypoints_io import KEYPOINTS_SUFFIX, write_openpose_json
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
            wrist, elbow = J[f"{side}Wrist"], J[f"{side}Elbow"]
            out[t, wrist, :2], out[t, elbow, :2] = hand_pose(base, neck, s, side, target, rub, reach)
        out[t, :, :2] += sway
    return out


def hand_pose(base: np.ndarray, neck, s, side: str, target: np.ndarray, rub, reach):
    """Wrist and elbow (x, y) of one hand ``reach`` of the way (0 rest, 1 there) to the class target.

    ``base`` is a (25, 3) pose or a (n, 25, 3) stack; ``neck``, ``rub`` and ``reach`` broadcast
    against it (per frame in a stream), so the trimmed clips and the streams share one geometry.
    """
    sign = 1.0 if side == "L" else -1.0
    goal = neck + np.array([sign * target[0], target[1]]) * s + rub
    wrist, elbow = J[f"{side}Wrist"], J[f"{side}Elbow"]
    w = (1 - reach) * base[..., wrist, :2] + reach * goal
    e = (1 - reach) * base[..., elbow, :2] + reach * (0.5 * goal + 0.5 * base[..., J[f"{side}Shoulder"], :2]
                                                      + np.array([sign * 0.6 * s, 0.7 * s]))
    return w, e


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


# ----------------------------------------------------------------------------- untrimmed videos
LABEL_COLUMNS = ("video_id", "label_id", "start_time", "start_frame", "end_time", "end_frame", "class",
                 "subject_id", "subject_gender", "subject_nationality", "win_or_lose")   # the official CSV's, in order
_STREAM_TAG = 7919   # in every stream seed: keeps these generators apart from the trimmed clips' [seed, clip]
_HEAD = [J[k] for k in ("Nose", "REye", "LEye", "REar", "LEar")]
_TORSO = _HEAD + [J["Neck"], J["RShoulder"], J["LShoulder"]]
_ELBOWS = [J["RElbow"], J["LElbow"]]


@dataclass(frozen=True)
class UntrimmedConfig:
    videos: int = 40                                   # number of videos, ids "1".."N"
    seed: int = 0                                      # everything is a function of the seed
    fps: float = 25.0                                  # frame rate of the videos; label times are frame / fps
    seconds: tuple[float, float] = (25.0, 45.0)        # video length range
    gesture_seconds: tuple[float, float] = (0.8, 3.5)  # labelled interval length range
    gesture_median_s: float = 1.6                      # median interval (log-normal, clipped to the range)
    gap_seconds: tuple[float, float] = (1.0, 3.0)      # idle stretch before each gesture (and >= the minimum after the last)
    videos_per_subject: int = 4                        # subjects = videos // this, at least 2 when there are 2+ videos
    test_fraction: float = 0.3                         # share of subjects in protocol.json's test part
    fidgets_per_s: float = 0.1                         # small non-class movements (nod, hand shift) in idle stretches
    missing_joint_rate: float = 0.05                   # detector noise of the JSON, as in SynthConfig
    empty_frame_rate: float = 0.03                     # frames where "OpenPose" found nobody
    jitter_px: float = 1.5                             # keypoint noise, pixels
    classes: tuple[int, ...] = ()                      # class indices the gestures cycle over; () = all 32
                                                       # (a few classes make a small set a short test can learn)

    def __post_init__(self):
        if any(not 0 <= c < NUM_CLASSES for c in self.classes) or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"untrimmed synth: classes must be distinct indices in 0..{NUM_CLASSES - 1}, "
                             f"got {self.classes}")
        ranges = {"seconds": self.seconds, "gesture_seconds": self.gesture_seconds, "gap_seconds": self.gap_seconds}
        bad = [k for k, (lo, hi) in ranges.items() if not 0 < lo <= hi]
        if self.videos < 1 or self.fps <= 0 or self.videos_per_subject < 1 or bad:
            raise ValueError(f"untrimmed synth: need videos >= 1, fps > 0, videos_per_subject >= 1 and "
                             f"0 < low <= high ranges; got {self} (bad: {', '.join(bad) or 'none'})")


@dataclass(frozen=True)
class Gesture:
    label: int    # 0-based class index
    start: int    # first frame of the labelled interval (0-based): the hand leaves rest here
    end: int      # last frame, inclusive: the hand is back at rest here


@dataclass(frozen=True)
class VideoPlan:
    video_id: str                    # "1".."N"
    index: int                       # 0-based position; seeds the video's own generator
    subject: int                     # synthetic subject id, 1-based
    frames: int                      # length of the video, frames
    gestures: tuple[Gesture, ...]    # in time order, with idle stretches between them


def _subjects(cfg: UntrimmedConfig, rng: np.random.Generator) -> np.ndarray:
    """Subject id per video: several videos each, at least two subjects so the protocol has a test part."""
    n = cfg.videos
    count = min(n, max(2, n // cfg.videos_per_subject)) if n >= 2 else 1
    return rng.permutation(np.arange(n) % count) + 1


def _class_cycle(rng: np.random.Generator, classes: tuple[int, ...] = ()):
    """Class indices, all (of ``classes``, default the 32) in a shuffled order, again and again: every
    class appears in a set of 32+ gestures."""
    pool = np.array(classes or range(NUM_CLASSES))
    while True:
        yield from pool[rng.permutation(len(pool))].tolist()


def _gesture_frames(cfg: UntrimmedConfig, rng: np.random.Generator) -> int:
    lo, hi = cfg.gesture_seconds
    frames = round(cfg.gesture_median_s * np.exp(rng.normal(0.0, 0.35)) * cfg.fps)
    return max(3, int(np.clip(frames, np.ceil(lo * cfg.fps), np.floor(hi * cfg.fps))))


def _plan_video(i: int, subject: int, cfg: UntrimmedConfig, rng: np.random.Generator, classes) -> VideoPlan:
    n = round(rng.uniform(*cfg.seconds) * cfg.fps)
    min_tail = round(cfg.gap_seconds[0] * cfg.fps)
    t, gestures = round(rng.uniform(*cfg.gap_seconds) * cfg.fps), []
    while True:
        length = _gesture_frames(cfg, rng)
        if t + length + min_tail > n:
            break
        gestures.append(Gesture(next(classes), t, t + length - 1))
        t += length + round(rng.uniform(*cfg.gap_seconds) * cfg.fps)
    return VideoPlan(str(i + 1), i, int(subject), n, tuple(gestures))


def plan_untrimmed(cfg: UntrimmedConfig) -> list[VideoPlan]:
    """Every video's length, subject and labelled intervals; cheap, so the labels never wait for pixels."""
    rng = np.random.default_rng([cfg.seed, _STREAM_TAG])
    subjects, classes = _subjects(cfg, rng), _class_cycle(rng, cfg.classes)
    return [_plan_video(i, subjects[i], cfg, rng, classes) for i in range(cfg.videos)]


def idle_stream(base: np.ndarray, n: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 25, 3) of a seated person at rest: breathing (~0.25 Hz, 1-2 px up and down) and a slow sway move
    head, neck and shoulders (elbows half as much); the hands rest on the lap."""
    t = np.arange(n) / fps
    breath = rng.uniform(1.0, 2.0) * np.sin(2 * np.pi * rng.uniform(0.2, 0.3) * t + rng.uniform(0, 2 * np.pi))
    sway = sum(rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * rng.uniform(0.03, 0.12) * t + rng.uniform(0, 2 * np.pi))
               for _ in range(2))
    move = np.stack([sway, breath + 0.3 * sway], axis=1)[:, None]    # (n, 1, 2) px
    out = np.repeat(base[None], n, axis=0)
    out[:, _TORSO, :2] += move
    out[:, _ELBOWS, :2] += 0.5 * move
    return out


def _idle_spans(plan: VideoPlan):
    """Inclusive frame ranges between the labelled intervals (video start and end included)."""
    first = 0
    for g in plan.gestures:
        yield first, g.start - 1
        first = g.end + 1
    yield first, plan.frames - 1


def add_fidgets(kp: np.ndarray, plan: VideoPlan, fps: float, rate: float, rng: np.random.Generator) -> None:
    """Small non-class movements inside idle stretches, in place: a nod of 2-3 px, or a hand shifting
    2-4 px on the lap and back; well clear of the labelled intervals."""
    margin, s = round(0.2 * fps), (kp[0, J["LShoulder"], 0] - kp[0, J["RShoulder"], 0]) / 2
    for lo, hi in _idle_spans(plan):
        room = hi - lo + 1 - 2 * margin
        for _ in range(rng.poisson(rate * room / fps) if room > 0 else 0):
            d = round(rng.uniform(0.4, 1.0) * fps)
            if d >= room:
                continue
            f0 = lo + margin + int(rng.integers(0, room - d + 1))
            bump = (np.sin(np.pi * np.arange(d) / (d - 1)) ** 2)[:, None]      # 0 -> 1 -> 0
            if rng.random() < 0.5:
                kp[f0:f0 + d, _HEAD, 1] += rng.uniform(2.0, 3.0) * bump
            else:
                side = ("R", "L")[int(rng.integers(2))]
                shift = rng.normal(0, 1, 2)
                shift *= min(rng.uniform(2.0, 4.0), 0.15 * s) / max(np.linalg.norm(shift), 1e-6)
                kp[f0:f0 + d, J[f"{side}Wrist"], :2] += bump * shift
                kp[f0:f0 + d, J[f"{side}Elbow"], :2] += 0.5 * bump * shift


def add_gesture(kp: np.ndarray, g: Gesture, s: float, rng: np.random.Generator) -> None:
    """Class motion over [g.start, g.end], in place: the hand(s) reach the class target over the first ~20%,
    rub there at the class frequency (cycles per interval, as in a trimmed clip), return over the last ~20%."""
    hands, target, freq = class_motion(g.label)
    n = g.end - g.start + 1
    f = np.arange(n)
    reach = np.clip(np.minimum(f, n - 1 - f) / max(2, round(0.2 * n)), 0.0, 1.0)
    reach = (reach * reach * (3 - 2 * reach))[:, None]     # smoothstep: leaves and lands without a jerk
    u, phase = f / (n - 1), rng.uniform(0, 2 * np.pi)
    rub = np.stack([np.cos(2 * np.pi * freq * u + phase), np.sin(2 * np.pi * freq * u + phase)], axis=1) * 0.15 * s
    seg = kp[g.start:g.end + 1]
    neck = seg[:, J["Neck"], :2].copy()     # the target follows the breathing head
    for side in hands:
        seg[:, J[f"{side}Wrist"], :2], seg[:, J[f"{side}Elbow"], :2] = hand_pose(seg, neck, s, side, target, rub, reach)


def stream_pose(plan: VideoPlan, cfg: UntrimmedConfig, rng: np.random.Generator) -> np.ndarray:
    """(frames, 25, 3) noiseless keypoints of one video: idle body, fidgets, then the gestures."""
    base = rest_pose(np.random.default_rng([cfg.seed, _STREAM_TAG, 2, plan.subject]))   # a subject keeps their build
    base[:, :2] += rng.uniform(-4, 4, size=2)                                           # and sits a bit differently
    s = float(base[J["LShoulder"], 0] - base[J["RShoulder"], 0]) / 2
    kp = idle_stream(base, plan.frames, cfg.fps, rng)
    add_fidgets(kp, plan, cfg.fps, cfg.fidgets_per_s, rng)
    for g in plan.gestures:
        add_gesture(kp, g, s, rng)
    return kp


def _write_video(path: Path, kp_true: np.ndarray, rng: np.random.Generator, background: np.ndarray,
                 fps: float) -> None:
    """mp4v video of the noiseless poses, committed under its name only once every frame is in."""
    def write(tmp: str) -> None:
        w = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, FRAME_SIZE)
        if not w.isOpened():
            raise ValueError(f"{path}: OpenCV cannot write an mp4v video here")
        try:
            for frame in kp_true:
                w.write(render(frame, rng, background))
        finally:
            w.release()
    atomic_write(path, write, suffix=".tmp.mp4")


def render_video(out: str, plan: VideoPlan, cfg: UntrimmedConfig) -> None:
    """Write one video and its per-frame OpenPose JSON (an empty people list where "OpenPose" found nobody)."""
    rng = np.random.default_rng([cfg.seed, _STREAM_TAG, 1, plan.index])
    kp_true = stream_pose(plan, cfg, rng)
    kp_obs = add_detector_noise(kp_true, cfg, rng)
    vid, root = plan.video_id, Path(out)
    folder = root / "skeleton" / vid
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(plan.frames):
        people = [] if kp_obs[f, :, 2].max() == 0 else [kp_obs[f]]
        write_openpose_json(folder / f"{vid}_{f:012d}{KEYPOINTS_SUFFIX}", people)
    stale = re.compile(rf"^{re.escape(vid)}_(\d+){re.escape(KEYPOINTS_SUFFIX)}$")
    for m in filter(None, map(stale.match, os.listdir(folder))):   # left by an earlier, longer video of this id
        if int(m[1]) >= plan.frames:
            os.unlink(folder / m[0])
    bg = np.full((FRAME_SIZE[1], FRAME_SIZE[0], 3), rng.integers(185, 200, size=3), dtype=np.uint8)
    _write_video(root / "videos" / f"{vid}.mp4", kp_true, rng, bg, cfg.fps)


def _render_all(out: Path, plans: list[VideoPlan], cfg: UntrimmedConfig, progress, workers: int | None) -> None:
    """Render the videos, in worker processes when there are several: each video has its own generator,
    so the files do not depend on the number of workers."""
    workers = min(len(plans), workers or os.cpu_count() or 1)
    if workers <= 1:
        for i, plan in enumerate(plans):
            render_video(str(out), plan, cfg)
            if progress is not None:
                progress(i + 1, len(plans))
        return
    # spawn: fresh interpreters, nothing inherited from the caller's threads (OpenCV, rich's live display)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(render_video, str(out), plan, cfg) for plan in plans]
        for done, fut in enumerate(as_completed(futures), start=1):
            fut.result()
            if progress is not None:
                progress(done, len(plans))
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()


def labels_csv(plans: list[VideoPlan], fps: float) -> str:
    """The label file, official columns in the official order; frames 0-based, times = frame / fps."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LABEL_COLUMNS)
    classes = imigue_classes()
    for p in plans:
        for k, g in enumerate(p.gestures, start=1):
            w.writerow([p.video_id, k, f"{g.start / fps:.4f}", g.start, f"{g.end / fps:.4f}", g.end,
                        classes[g.label].id, p.subject, "MF"[p.subject % 2], "Synthetic", ("Win", "Lose")[p.index % 2]])
    return buf.getvalue()


def protocol(plans: list[VideoPlan], cfg: UntrimmedConfig) -> dict:
    """A cross-subject protocol over the synthetic subjects (~70/30), in the packaged protocol's format."""
    subjects = sorted({p.subject for p in plans})
    rng = np.random.default_rng([cfg.seed, _STREAM_TAG, 3])
    n_test = min(len(subjects) - 1, max(1, round(cfg.test_fraction * len(subjects))))
    test = sorted(int(x) for x in rng.choice(subjects, n_test, replace=False)) if n_test > 0 else []
    train = [x for x in subjects if x not in test]
    count = lambda part: sum(len(p.gestures) for p in plans if p.subject in part)  # noqa: E731
    return {"source": f"SYNTHETIC: written by `mgr synth --untrimmed` (seed {cfg.seed}); NOT iMiGUE's protocol",
            "train_subjects": train, "test_subjects": test,
            "samples_in_label_file": {"train": count(train), "test": count(test)}}


def _claim_folder(out: Path) -> Path:
    """Make ``out`` ready for a new set: refuse a folder whose label file is not ours (a real dataset, say),
    and take away the old set's label file first, so that a half-rewritten folder reads as no dataset."""
    labels, readme = out / "labels.csv", out / "README.md"
    if labels.exists():
        ours = readme.is_file() and "generated by `mgr synth --untrimmed`" in readme.read_text(errors="replace")
        if not ours:
            raise ValueError(f"{labels}: exists and {readme} does not say `mgr synth --untrimmed` wrote it; "
                             "refusing to write synthetic videos over a dataset: choose an empty folder")
        labels.unlink()
        log.info("%s: rewriting the synthetic set that was there", out)
    out.mkdir(parents=True, exist_ok=True)
    return out


UNTRIMMED_README = """# Synthetic untrimmed iMiGUE (generated by `mgr synth --untrimmed`)

THIS IS SYNTHETIC DATA. It is not iMiGUE and says nothing about real micro-gestures.

Stick figures sit and breathe; now and then a hand makes one of the 32 class movements
(reach a body target, rub there, return to rest). Official layout (README "Data layouts"):

- `labels.csv`: one row per labelled interval, the official columns; frames 0-based,
  times = frame / {fps:g}; the interval covers the whole movement, rest to rest
- `videos/<id>.mp4`: 320x180, {fps:g} fps, {seconds[0]:g}-{seconds[1]:g} s each
- `skeleton/<id>/<id>_<frame:012d>_keypoints.json`: OpenPose Body_25 JSON for every frame,
  with keypoint noise, dropped joints and empty frames (empty people list)
- `protocol.json`: a cross-subject split of the synthetic subjects (~70/30), NOT iMiGUE's

Between the intervals the figure is idle (breathing, sway, small fidgets): no class motion.

videos: {videos}, seed: {seed}. Class names are the official iMiGUE names, used as labels only.
"""


def generate_untrimmed(out: str | Path, cfg: UntrimmedConfig = UntrimmedConfig(), progress=None,
                       workers: int | None = None) -> Path:
    """Write the untrimmed set under ``out``. ``progress(done, total)`` is called per video; ``workers``
    processes render (default: one per core). labels.csv comes last: an interrupted run leaves a folder
    that no reader takes for a dataset."""
    plans = plan_untrimmed(cfg)
    if not any(p.gestures for p in plans):
        raise ValueError(f"{out}: videos of {cfg.seconds[0]:g}-{cfg.seconds[1]:g} s are too short for a gesture "
                         f"between idle stretches of at least {cfg.gap_seconds[0]:g} s; nothing written")
    out = _claim_folder(Path(out))
    atomic_write_text(out / "README.md", UNTRIMMED_README.format(**cfg.__dict__))
    _render_all(out, plans, cfg, progress, workers)
    atomic_write_json(out / "protocol.json", protocol(plans, cfg), indent=1)
    atomic_write_text(out / "labels.csv", labels_csv(plans, cfg.fps))
    log.info("wrote %d synthetic untrimmed videos (%d labelled intervals) to %s",
             len(plans), sum(len(p.gestures) for p in plans), out)
    return out
