"""One inference step of the live loop: framing, pose, encode once, clip head over cached features.

Four frames go into the model, as in training, but training clips span a whole gesture
(1.57 s median in iMiGUE, README "Data layouts") and four consecutive webcam frames span
0.13 s. So every step takes the current frame plus the cached frames nearest to
``window/3``, ``2*window/3`` and ``window`` seconds ago: the same evenly spaced positions
``sample_frame_indices`` picks in an evaluation clip. Each frame is encoded once, when it
arrives; a step runs only the clip head over the cached (T, 512) features.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from mgr.train.preprocess import preprocess_rgb_frame, preprocess_skeleton, rescale_keypoints

from .body25 import FramingBox, center_crop_box, crop_frame, crop_to_frame
from .events import BACKGROUND_NAME, NO_GESTURE, EventConfig, EventDecoder, EventView, GestureEvent
from .sources import Frame

log = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 1.6   # median iMiGUE micro-gesture (1.57 s), README "Data layouts"
STATUSES = ("ok", "uncertain", "warming up", "no person")
# The loop's timed stages, in order: the inference step's (Prediction.ms keys) between the
# frame's capture and its drawing. MODEL_STAGES are the model's share of a step (encode + head);
# "events" is the event decoder's.
STEP_STAGES = ("pose", "encode", "head", "events")
MODEL_STAGES = STEP_STAGES[1:3]
FRAME_STAGES = ("capture", "draw")       # timed per frame by the drivers, around the step
STAGES = (FRAME_STAGES[0], *STEP_STAGES, FRAME_STAGES[1])


@dataclass(frozen=True)
class LiveConfig:
    window_s: float | None = None        # span of the 4 sampled frames; None: artifact's clip_seconds, else 1.6
    inference_fps: float | None = 10.0   # inference steps per second; None: every frame (replay)
    smooth: int = 1                      # moving average of probabilities over the last K steps
    threshold: float = 0.2               # top-1 probability below which the label is "uncertain"
    top_k: int = 5                       # classes shown and logged
    cache_features: bool = True          # encode each frame once (False: re-encode all T, the naive way)
    overlap_encode: bool = True          # encode on a helper thread while pose runs (both release the GIL)
    read_ahead: int = 3                  # replay: frames decoded and posed ahead of the head, drawing and writing (0: none)
    mirror: bool = False                 # selfie view: flip the display only, never the model input
    events: EventConfig = field(default_factory=EventConfig)   # how the step stream becomes gesture events


@dataclass(frozen=True)
class Prediction:
    status: str                              # one of STATUSES
    top: tuple[tuple[str, float], ...]       # (class name, probability), best first; empty unless ok/uncertain
    keypoints: np.ndarray | None             # (25, 3) Body_25 in full-frame pixels, None without a person
    box: FramingBox                          # the framing crop in the full frame
    frame_index: int                         # frame the step ran on
    timestamp_ms: float                      # its timestamp
    captured_at: float                       # its capture time (perf_counter), for latency
    ms: dict = field(default_factory=dict)   # milliseconds of the stages this step ran (pose, encode, head, events)
    probs: np.ndarray | None = None          # (num_classes,) smoothed probabilities; None unless ok/uncertain
    state: str = NO_GESTURE                  # the open event's class name, or "no gesture"
    events: tuple[GestureEvent, ...] = ()    # events this step finalised (usually none)
    event_view: EventView | None = None      # the open event and the recent ones, for the overlay
    evidence: tuple[float, int] | None = None   # (seconds, frame) the decoder placed this step at: its window's centre


@dataclass(frozen=True)
class Observation:
    """What ``Recognizer.observe`` learned of a frame before the clip head: framing, pose, encoding."""
    frame: Frame
    box: FramingBox                  # the framing crop in the full frame
    crop: np.ndarray                 # the crop as RGB (pose's and the encoder's input)
    kp_crop: np.ndarray | None       # (25, 3) Body_25 in the crop's pixels, None without a person
    encoding: Future | None          # the encoder thread's (entry, ms), or None (encoded in conclude)
    ms: dict                         # stage milliseconds so far (pose)


def resolve_window(window_s: float | None, clip_seconds: float | None) -> float:
    """The --window value, else the artifact's median clip duration, else 1.6 s."""
    for value in (window_s, clip_seconds):
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


class StepClock:
    """Times and frame numbers of the recent steps: where the centre of a step's window falls."""

    def __init__(self):
        self._times: deque[float] = deque()
        self._frames: deque[int] = deque()

    def centre(self, t_ms: float, index: int, window_s: float) -> tuple[float, int]:
        """(t_ms - window/2, the frame number of the step nearest that time); remembers this step."""
        self._times.append(t_ms)
        self._frames.append(index)
        target = t_ms - window_s * 500.0
        while len(self._times) > 1 and self._times[1] <= target:     # keep one step at or before the centre
            self._times.popleft()
            self._frames.popleft()
        if len(self._times) > 1 and abs(self._times[1] - target) < abs(self._times[0] - target):
            return target, self._frames[1]
        return target, self._frames[0]

    def reset(self) -> None:
        self._times.clear()
        self._frames.clear()


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


# ----------------------------------------------------------------------------- the step's stages
# Each stage of Recognizer.step as a function of plain inputs, so it can be checked without a
# model or a pose model; the Recognizer methods below only hold the state and the timing.
POSE_STAGE, ENCODE_STAGE, HEAD_STAGE, EVENTS_STAGE = STEP_STAGES   # the Prediction.ms keys


def frame_crop(image: np.ndarray, reference_size) -> tuple[FramingBox, np.ndarray]:
    """Framing: the centre crop of a BGR frame, as RGB (the one crop and conversion pose and encoder share)."""
    h, w = image.shape[:2]
    box = center_crop_box((w, h), reference_size)
    return box, cv2.cvtColor(crop_frame(image, box), cv2.COLOR_BGR2RGB)


def run_pose(pose, crop_rgb: np.ndarray, timestamp_ms: float) -> tuple[np.ndarray | None, float]:
    """Pose: (25, 3) keypoints in the crop's pixels (or None without a person), and its ms."""
    t0 = time.perf_counter()
    kp_crop = pose(crop_rgb, timestamp_ms)
    return kp_crop, _ms(t0)


def rgb_entry(crop_rgb: np.ndarray, prep, encode=None) -> np.ndarray:
    """Encode: what the history keeps for a frame's RGB stream, preprocessed with the artifact's ``prep``.

    encode: the backend's ``encode_frames`` (cached features: the frame's (512,) feature), or
    None to keep the preprocessed (3, H, W) input (naive mode re-encodes it at every step).
    """
    x = preprocess_rgb_frame(crop_rgb, prep)                       # (3, 224, 224)
    if encode is None:
        return x
    return np.asarray(encode(x[None]))[0]                          # (512,)


def record_frame(history: FrameHistory, t_ms: float, rgb: np.ndarray | None, kp_crop: np.ndarray,
                 crop_size, prep, window_s: float) -> list[int] | None:
    """History: add the frame (keypoints rescaled to the reference frame) and pick the clip's frames.

    Returns the indices into ``history`` of the ``prep.num_frames`` frames of the window, or
    None while warming up (see ``select_window``).
    """
    kp_ref = rescale_keypoints(kp_crop, crop_size, prep)
    history.add(t_ms, rgb, kp_ref)
    return select_window(history.times, t_ms, window_s, prep.num_frames)


def gather_clip(history: FrameHistory, picks: list[int], uses_rgb: bool, uses_skeleton: bool,
                prep) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Head input: the picked frames' RGB entries (1, T, ...) float32 and skeleton (1, 3, T, 25), or None."""
    feats = None
    if uses_rgb:
        feats = np.stack([history.rgb[i] for i in picks])[None].astype(np.float32, copy=False)
    skel = None
    if uses_skeleton:
        kp = np.stack([history.skeleton[i] for i in picks])       # (T, 25, 3)
        skel = preprocess_skeleton(kp, prep)[None]                 # (1, 3, T, 25)
    return feats, skel


def clip_probs(backend, feats: np.ndarray | None, skel: np.ndarray | None) -> np.ndarray:
    """Head: class probabilities of one clip."""
    logits = np.asarray(backend.classify(feats, skel))            # (1, num_classes)
    return softmax(logits[0])


def decide(probs: np.ndarray, names: list[str], k: int, threshold: float) -> tuple[str, tuple[tuple[str, float], ...]]:
    """Status ("ok" or "uncertain": top-1 below ``threshold``) and the top ``k`` classes."""
    top = top_k(probs, names, k)
    return ("ok" if top[0][1] >= threshold else "uncertain"), top


def pose_stage_factory(pose_model, num_poses: int = 1, mode: str = "video") -> Callable[[], object]:
    """A factory of fresh pose stages over the pose .task file ``pose_model`` (each stage is closed by its user)."""
    from .pose import PoseConfig, PoseEstimator, PoseStage

    return lambda: PoseStage(PoseEstimator(PoseConfig(Path(pose_model), mode=mode, num_poses=num_poses)))


class Recognizer:
    """The recogniser: Frame (or BGR image) -> Prediction, one inference step per call.

    This is the Python API (README "Python API") and the step every driver runs: ``mgr live``,
    ``mgr replay``, ``mgr evaluate-stream`` and the benchmarks open it with ``from_artifact``.
    Stateful (frame history, smoothing, events); ``reset()`` before an unrelated video.

    backend: an engines backend (``encode_frames``, ``classify``, ``metadata``);
    pose: a callable (RGB image, timestamp ms) -> (25, 3) keypoints in its pixels, or None.
    owned: what ``close()`` closes after the encoder thread (the pose stage ``from_artifact`` made).
    """

    @classmethod
    def from_artifact(cls, model, *, pose_model=None, window: float | None = None, smoothing: int = 1,
                      threshold: float = 0.2, threads: int | None = 1, num_poses: int = 1,
                      inference_fps: float | None = None, events: EventConfig | None = None,
                      device: str = "cpu", mode: str = "video", config: LiveConfig | None = None) -> "Recognizer":
        """Open an artifact (.pt, .onnx, .engine) and a MediaPipe pose stage; use as a context manager.

        ``pose_model``: a pose .task path; None finds it as the CLI does (``--pose-model``, then
        MGR_POSE_MODEL, then the cached download). Keywords mirror the CLI: ``window`` (--window
        seconds, default the model's clip length), ``smoothing`` (--smooth), ``threshold``,
        ``threads``, ``num_poses``, ``inference_fps`` (``replay``: steps per second of file time,
        None: every frame), ``events`` (the event decoder's settings, default the documented
        ones). ``config`` replaces those loop keywords with a whole LiveConfig (the CLI's path).
        ``model`` may also be a loaded backend and ``pose_model`` a factory of pose stages,
        shared by runs that open several recognisers (benchmarks); those are not closed here.
        """
        if config is None:
            config = LiveConfig(window_s=window, inference_fps=inference_fps, smooth=smoothing, threshold=threshold,
                                events=events if events is not None else EventConfig())
        if isinstance(model, (str, os.PathLike)):
            from mgr.engines.backends import load_backend   # realtime -> engines, never upward

            backend = load_backend(model, device=device, threads=threads)
        else:
            backend = model
        if callable(pose_model):
            make_pose = pose_model
        else:
            from .posemodel import resolve_pose_model

            make_pose = pose_stage_factory(resolve_pose_model(pose_model), num_poses, mode)
        stage = make_pose()
        try:
            return cls(backend, stage, config, owned=(stage,))
        except BaseException:
            stage.close()
            raise

    def __init__(self, backend, pose, cfg: LiveConfig, owned: tuple = ()):
        meta = backend.metadata
        self._owned = owned
        self._api_clock: tuple[int, float, float] | None = None   # step(image): (next index, last t_ms, t0)
        self.backend = backend
        self.pose = pose
        self.cfg = cfg
        self.class_names = list(meta.class_names)
        self.prep = meta.preprocessing          # the artifact's own numbers, never module defaults
        self.num_frames = self.prep.num_frames
        self.reference_size = self.prep.reference_size
        self.window_s = resolve_window(cfg.window_s, meta.clip_seconds)
        self.smoother = Smoother(cfg.smooth)
        self.history = FrameHistory(self.window_s)
        # "no gesture" is a class only for models trained with --background; without it the
        # decoder's thresholds alone decide when a gesture is on
        self.background_index = self.class_names.index(BACKGROUND_NAME) if BACKGROUND_NAME in self.class_names else None
        self.decoder = EventDecoder(cfg.events, self.class_names, self.background_index)
        self._steps = StepClock()
        self.encoded_frames = 0   # frames through the encoder, to check "encoded once"
        # Pose and the frame encoder need only the framed crop, so they can run at once: on
        # our 2-core machine this cut a step from ~100 to ~65 ms (README "Live loop figures"). The
        # feature of a frame without a person is then computed and dropped.
        overlap = cfg.overlap_encode and backend.uses_rgb
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix="encode") if overlap else None

    def __enter__(self) -> "Recognizer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def step(self, frame: Frame | np.ndarray, t_ms: float | None = None) -> Prediction:
        """One inference step on ``frame``: a Frame, or a BGR uint8 image (H, W, 3) taken at ``t_ms``.

        ``t_ms``: the image's time in milliseconds, increasing from step to step (file time,
        or a monotonic clock); None takes the time since the first step from the monotonic
        clock. The result's ``status``, ``top``, ``probs``, ``keypoints``, ``state`` and
        ``events`` (gesture events finished by this step) are documented in the README.
        """
        if not isinstance(frame, Frame):
            frame = self._api_frame(frame, t_ms)
        return self.conclude(self.observe(frame))

    def observe(self, frame: Frame) -> "Observation":
        """A step's first half: framing, pose, and the frame's encoding started (it may still run).

        It touches only the pose stage and the encoder thread, never the history, so the replay
        loop runs it for the next frames on a thread of its own while ``conclude`` finishes
        earlier ones. Observations must be concluded in the order they were observed.
        """
        ms: dict[str, float] = {}
        box, crop = frame_crop(frame.image, self.reference_size)
        encoding: Future | None = self._encoder.submit(self._rgb_entry, crop) if self._encoder else None
        kp_crop, ms[POSE_STAGE] = run_pose(self.pose, crop, frame.timestamp_ms)
        return Observation(frame, box, crop, kp_crop, encoding, ms)

    def conclude(self, obs: "Observation") -> Prediction:
        """A step's second half: the frame into the history, the clip head, the decision and the events."""
        frame, box, kp_crop, ms = obs.frame, obs.box, obs.kp_crop, obs.ms
        entry = obs.encoding.result() if obs.encoding is not None else None   # (feature, ms) or None
        base = dict(box=box, frame_index=frame.index, timestamp_ms=frame.timestamp_ms,
                    captured_at=frame.captured_at, ms=ms)
        if kp_crop is None:
            self.smoother.reset()   # no stale labels once the person is back
            return Prediction("no person", (), None, **base, **self._events(frame, None, ms))
        entry = entry if entry is not None else self._rgb_entry(obs.crop)
        if entry is not None:
            ms[ENCODE_STAGE] = entry[1]
        picks = record_frame(self.history, frame.timestamp_ms, entry[0] if entry is not None else None,
                             kp_crop, box.size, self.prep, self.window_s)
        kp_frame = crop_to_frame(kp_crop, box)
        if picks is None:
            return Prediction("warming up", (), kp_frame, **base, **self._events(frame, None, ms))
        t0 = time.perf_counter()
        probs = self.smoother(self._classify(picks))
        ms[HEAD_STAGE] = _ms(t0)
        status, top = decide(probs, self.class_names, self.cfg.top_k, self.cfg.threshold)
        return Prediction(status, top, kp_frame, **base, probs=probs, **self._events(frame, probs, ms))

    def _events(self, frame: Frame, probs: np.ndarray | None, ms: dict) -> dict:
        """Feed the step to the event decoder (None: no person, or warming up): the Prediction's state and events.

        The step's probabilities describe the window that ends at this frame, so the decoder places
        them at the window's centre (README "Events"); the step's own time is when an event is detected.
        """
        t0 = time.perf_counter()
        t_centre, frame_centre = self._steps.centre(frame.timestamp_ms, frame.index, self.window_s)
        events = tuple(self.decoder.update(t_centre / 1000.0, frame_centre, probs, now=frame.timestamp_ms / 1000.0))
        out = {"state": self.decoder.state, "events": events, "event_view": self.decoder.view(),
               "evidence": (t_centre / 1000.0, frame_centre)}
        ms[EVENTS_STAGE] = _ms(t0)
        return out

    def finish(self) -> tuple[GestureEvent, ...]:
        """The input ended: the event still open, closed with ``truncated`` set (README "Events")."""
        return tuple(self.decoder.finish())

    def _rgb_entry(self, crop: np.ndarray) -> tuple[np.ndarray, float] | None:
        """What the history keeps for the RGB stream, and its ms: the frame's feature (cached) or input (naive)."""
        if not self.backend.uses_rgb:
            return None
        t0 = time.perf_counter()
        encode = self.backend.encode_frames if self.cfg.cache_features else None
        if encode is not None:
            self.encoded_frames += 1
        return rgb_entry(crop, self.prep, encode), _ms(t0)

    def _classify(self, picks: list[int]) -> np.ndarray:
        feats, skel = gather_clip(self.history, picks, self.backend.uses_rgb, self.backend.uses_skeleton, self.prep)
        if feats is not None and not self.cfg.cache_features:       # naive: re-encode all T frames
            self.encoded_frames += len(picks)
            feats = np.asarray(self.backend.encode_frames(feats[0]))[None].astype(np.float32)  # (1, T, 512)
        return clip_probs(self.backend, feats, skel)

    def reset(self) -> None:
        self.history.reset()
        self.smoother.reset()
        self.decoder.reset()
        self._steps.reset()
        self._api_clock = None
        if hasattr(self.pose, "reset"):
            self.pose.reset()

    def replay(self, path, *, jsonl=None, events=None, save=None):
        """Every frame of a video file through the same loop as ``mgr replay``: yields each step's Prediction.

        Steps run on every frame, or at ``inference_fps`` of file time. ``jsonl``, ``events`` and
        ``save`` write the same files as ``mgr replay --jsonl/--events/--out``; stopping the
        iteration early still closes them whole, and Ctrl-C closes them, then raises
        KeyboardInterrupt in the caller as usual. The event still open at the end is written
        truncated to ``events`` (it is not yielded: no step finished it).
        """
        from .outputs import check_output_path
        from .runner import file_outputs, iter_replay
        from .sources import VideoFileSource

        for out, what in ((save, "annotated video"), (jsonl, "predictions"), (events, "event log")):
            if out is not None:
                check_output_path(out, what)
        source = VideoFileSource(path)
        try:
            self.reset()
            outputs = file_outputs(save, jsonl, events, source.fps or 25.0, source.size, log_timings=False)
            summary = yield from iter_replay(source, self, self.cfg, outputs)
        finally:
            source.close()
        if summary.interrupted:
            raise KeyboardInterrupt     # the files are whole; the caller's loop stops too

    def _api_frame(self, image: np.ndarray, t_ms: float | None) -> Frame:
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
            got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"Recognizer.step takes a BGR uint8 image (H, W, 3) or a Frame, not a {got}")
        now = time.perf_counter()
        index, last, t0 = self._api_clock or (0, float("-inf"), now)
        t = (now - t0) * 1000.0 if t_ms is None else float(t_ms)
        if not t > last:
            raise ValueError(f"Recognizer.step: t_ms must increase from step to step ({t:g} ms after {last:g} ms); "
                             "call reset() before a new video")
        self._api_clock = (index + 1, t, t0)
        return Frame(image, index, t, now)

    def close(self) -> None:
        """Stop the encoder thread, then close what ``from_artifact`` opened (a caller's pose stage stays open)."""
        if self._encoder is not None:
            self._encoder.shutdown(wait=True)
            self._encoder = None
        owned, self._owned = self._owned, ()
        for thing in owned:
            thing.close()
