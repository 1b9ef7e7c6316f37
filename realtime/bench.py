"""`mgr bench live VIDEO`: the loop's speed, measured three ways in one run.

1. replay as shipped: every frame through pose and encode (at once, on two threads), then head;
2. replay, feature caching on, pose and encode one after the other;
3. replay, feature caching off (naive): every step re-encodes all T frames (also serial);
4. live on an emulated camera that plays the video's frames at ``camera_fps`` in real time,
   with inference at ``inference_fps`` in its own thread: display rate, inference rate and
   the latency from frame capture to drawn labels.
The inference step's cost is encode + head per step, compared between 2 and 3 (both serial, so
pose does not compete with the encoder); caching should make it about T times cheaper.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2

from mgr.train.machine import machine_info

from .pipeline import MODEL_STAGES, LiveConfig
from .runner import Outputs, RunSummary, open_recognizer, run_live, run_replay
from .sources import EmulatedCamera, LiveSource, VideoFileSource


@dataclass(frozen=True)
class BenchLiveConfig:
    video: Path                    # input video (every frame is replayed twice, then looped live)
    camera_fps: float = 30.0       # rate of the emulated camera
    inference_fps: float = 10.0    # live inference steps per second asked for
    live_seconds: float = 10.0     # length of the live part
    window_s: float | None = None  # sampling window (None: the artifact's default)
    max_live_frames: int = 300     # frames of the video kept in memory for the emulated camera


def step_cost_ms(summary: RunSummary) -> float:
    """Mean encode + head milliseconds per inference step."""
    return sum(summary.stage_ms.get(k, {}).get("mean", 0.0) for k in MODEL_STAGES)


def _load_frames(video: Path, limit: int) -> list:
    cap, frames = cv2.VideoCapture(str(video)), []
    while len(frames) < limit:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def run_bench_live(cfg: BenchLiveConfig, backend, make_pose: Callable[[], object]) -> dict:
    """Run the three measurements. ``make_pose()`` gives a fresh pose stage (closed here)."""
    results: dict = {"video": str(cfg.video), "machine": machine_info(),
                     "model": getattr(backend, "source", None), "runtime": getattr(backend, "runtime", None)}
    runs = (("replay", True, True), ("replay_cached_serial", True, False), ("replay_naive_serial", False, False))
    for name, cache, overlap in runs:
        replay_cfg = LiveConfig(window_s=cfg.window_s, inference_fps=None, cache_features=cache, overlap_encode=overlap)
        source = VideoFileSource(cfg.video)
        results[name] = _measure(lambda rec, s=source, c=replay_cfg: run_replay(s, rec, c, Outputs()),
                                 source, backend, make_pose, replay_cfg)
    frames = _load_frames(cfg.video, cfg.max_live_frames)
    live_cfg = LiveConfig(window_s=cfg.window_s, inference_fps=cfg.inference_fps)
    live = LiveSource(lambda: EmulatedCamera(frames, cfg.camera_fps), "emulated camera", max_reconnects=0)
    results["live"] = _measure(lambda rec: run_live(live, rec, live_cfg, Outputs(), None, cfg.live_seconds),
                               live, backend, make_pose, live_cfg)
    results["live"]["camera_fps"] = cfg.camera_fps
    cached, naive = results["replay_cached_serial"]["step_ms"], results["replay_naive_serial"]["step_ms"]
    results["caching_speedup"] = naive / cached if cached > 0 else None
    return results


def _measure(run: Callable, source, backend, make_pose, live_cfg: LiveConfig) -> dict:
    try:
        with open_recognizer(backend, make_pose, cfg=live_cfg) as recognizer:
            summary = run(recognizer)
    finally:
        source.close()
    out = summary.to_dict()
    out["step_ms"] = step_cost_ms(summary)
    return out
