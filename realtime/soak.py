"""`mgr bench soak VIDEO`: the live loop for a long time, watched for drift.

A long live session fails in ways a short benchmark does not show: memory that grows a
little every frame, latency that creeps up, a capture thread that falls behind. The soak
runs the live loop on an emulated camera (the video's frames, looped at ``camera_fps``)
in intervals, one Recognizer and one source throughout, and records per interval the
display and inference rates, the capture -> labels latency, dropped frames and the
process's resident memory.
"""
from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .bench import _load_frames
from .pipeline import LiveConfig, Recognizer
from .runner import Outputs, run_live
from .sources import EmulatedCamera, LiveSource


@dataclass(frozen=True)
class SoakConfig:
    video: Path                    # frames of the emulated camera (looped)
    seconds: float = 600.0         # total length
    interval_s: float = 30.0       # one row of figures per interval
    camera_fps: float = 30.0       # emulated camera rate
    inference_fps: float = 10.0    # inference steps per second asked for
    window_s: float | None = None  # sampling window (None: the artifact's default)
    max_frames: int = 300          # video frames kept in memory


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc), else its peak (getrusage)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _row(i: int, summary, dropped_before: int) -> dict:
    lat = summary.latency_ms
    return {"interval": i, "display_fps": summary.display_fps, "inference_fps": summary.inference_fps,
            "latency_p50_ms": lat.get("p50"), "latency_p95_ms": lat.get("p95"),
            "dropped": summary.dropped - dropped_before, "rss_mb": rss_mb()}


def run_soak(cfg: SoakConfig, backend, make_pose: Callable[[], object],
             on_interval: Callable[[dict], None] | None = None) -> dict:
    """Run the intervals; ``on_interval(row)`` after each (for a live table)."""
    frames = _load_frames(cfg.video, cfg.max_frames)
    if not frames:
        raise ValueError(f"{cfg.video}: no decodable frames for the emulated camera")
    live_cfg = LiveConfig(window_s=cfg.window_s, inference_fps=cfg.inference_fps)
    source = LiveSource(lambda: EmulatedCamera(frames, cfg.camera_fps), "emulated camera", max_reconnects=0)
    pose = make_pose()
    recognizer = Recognizer(backend, pose, live_cfg)
    rows, start_rss, dropped = [], rss_mb(), 0
    try:
        for i in range(max(1, round(cfg.seconds / cfg.interval_s))):
            summary = run_live(source, recognizer, live_cfg, Outputs(), None, cfg.interval_s)
            rows.append(_row(i, summary, dropped))
            dropped = summary.dropped          # the source counts over its whole life
            if on_interval is not None:
                on_interval(rows[-1])
            if summary.interrupted or not summary.end_reason.startswith("ran the requested"):
                break
    finally:
        recognizer.close()
        pose.close()
        source.close()
    return {"video": str(cfg.video), "intervals": rows, "start_rss_mb": start_rss,
            "rss_growth_mb": rows[-1]["rss_mb"] - rows[0]["rss_mb"],
            "history_frames": len(recognizer.history.times)}
