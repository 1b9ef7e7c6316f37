"""`mgr bench soak [VIDEO]`: a long replay, headless, with the process's memory sampled.

A long session fails in ways a short benchmark does not show: memory that grows a little
every frame, a writer that buffers the whole run, a history that is never trimmed. The soak
runs the real replay path (``run_replay`` with the annotated-mp4 and JSONL writers) over a
long video, by default one it generates: the packaged astronaut photo, panned and zoomed
(``demo.demo_video``), ``minutes`` long, cached under MGR_HOME/soak. Every ``interval_s`` of
video it samples the resident memory (RSS). The first sample after the start is the
warm-up (models loaded, runtimes' pools and the frame history filled); the figures are the
growth from it to the end and a least-squares slope in MB per minute of video over the
samples from it on, and the run passes when the growth stays within ``max_growth_mb``.
Afterwards it checks that the outputs are whole: the mp4 holds every frame, the JSONL one
parsable line per inference step.

``mode="live"`` runs the live loop instead, on an emulated camera (the video's first frames,
looped in real time) for ``minutes`` of wall time, in intervals with their rates, latency
and dropped frames; it has no writers (replay soaks them).
"""
from __future__ import annotations

import json
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .bench import _load_frames
from .outputs import JsonlSink, VideoSink
from .pipeline import LiveConfig, Recognizer
from .runner import Outputs, open_recognizer, run_live, run_replay
from .sources import EmulatedCamera, LiveSource, VideoFileSource

GENERATED_FPS = 15.0          # the generated video: demo_video's rate and 640x360 size
MODES = ("replay", "live")


@dataclass(frozen=True)
class SoakConfig:
    video: Path                    # input (see soak_video for the generated one)
    out: Path                      # folder of soak.mp4 and soak.jsonl (replay)
    mode: str = "replay"           # "replay" (real writers) or "live" (emulated camera, no writers)
    minutes: float = 10.0          # live: length of the run (replay: the video's own length)
    interval_s: float = 30.0       # a memory sample every this many seconds of video (live: of wall time)
    inference_fps: float = 10.0    # inference steps per second of video
    window_s: float | None = None  # sampling window (None: the artifact's default)
    max_growth_mb: float = 50.0    # bound on the growth from the warm-up sample to the end
    camera_fps: float = 30.0       # live: emulated camera rate
    max_frames: int = 300          # live: video frames kept in memory


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc), else its peak (getrusage)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux


def soak_video(seconds: float, folder: Path | None = None) -> Path:
    """The generated input, ``seconds`` long: made once, then reused from ``folder`` (MGR_HOME/soak)."""
    from mgr.train.registry import mgr_home

    from .demo import demo_video
    folder = folder if folder is not None else mgr_home() / "soak"
    path = folder / f"astronaut-{seconds:g}s-{GENERATED_FPS:g}fps.mp4"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        demo_video(path, seconds, GENERATED_FPS)          # written under a temp name, then renamed
    return path


def memory_figures(samples: list[dict], max_growth_mb: float) -> dict:
    """Start, warm-up (the first interval sample), end, growth warm-up -> end, slope, bound.

    ``samples``: {"t_s" (video seconds), "rss_mb", ...}, the start first and the end last.
    The slope is a least-squares line through the samples from the warm-up on, in MB per
    minute of video (a live session sees a minute of video a minute); None with fewer than
    two distinct times.
    """
    start, end = samples[0], samples[-1]
    warm = samples[1] if len(samples) > 2 else end
    tail = samples[1:] if len(samples) > 2 else samples[-1:]
    t = np.array([s["t_s"] for s in tail]) / 60.0
    slope = float(np.polyfit(t, [s["rss_mb"] for s in tail], 1)[0]) if len(set(t.tolist())) >= 2 else None
    growth = end["rss_mb"] - warm["rss_mb"]
    return {"start_mb": start["rss_mb"], "warmup_mb": warm["rss_mb"], "warmup_at_s": warm["t_s"],
            "end_mb": end["rss_mb"], "peak_mb": peak_rss_mb(), "growth_mb": growth, "slope_mb_per_min": slope,
            "max_growth_mb": max_growth_mb, "within_bound": growth <= max_growth_mb,
            "warmup_sampled": len(samples) > 2}


def check_outputs(mp4: Path, jsonl: Path, frames: int, steps: int) -> dict:
    """Are the outputs whole? The mp4 opens and holds ``frames``; the JSONL has ``steps`` whole lines."""
    cap = cv2.VideoCapture(str(mp4))
    opened = cap.isOpened()
    mp4_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if opened else 0
    cap.release()
    lines, whole = 0, True
    try:
        raw = jsonl.read_bytes()
    except OSError:
        raw, whole = b"", False
    whole = whole and (raw == b"" or raw.endswith(b"\n"))
    for line in raw.splitlines():
        try:
            json.loads(line)
            lines += 1
        except ValueError:
            whole = False
    ok = opened and mp4_frames == frames and whole and lines == steps
    return {"mp4": str(mp4), "mp4_frames": mp4_frames, "frames_written": frames, "jsonl": str(jsonl),
            "jsonl_lines": lines, "steps": steps, "whole": ok}


def run_soak(cfg: SoakConfig, backend, make_pose: Callable[[], object],
             on_sample: Callable[[dict], None] | None = None,
             on_frame: Callable[[int], None] | None = None) -> dict:
    """Run the soak; ``on_sample(sample)`` after every memory sample, ``on_frame(i)`` per replayed frame."""
    if cfg.mode not in MODES:
        raise ValueError(f"unknown soak mode {cfg.mode!r}: use one of {', '.join(MODES)}")
    live_cfg = LiveConfig(window_s=cfg.window_s, inference_fps=cfg.inference_fps)
    with open_recognizer(backend, make_pose, cfg=live_cfg) as recognizer:
        run = _replay if cfg.mode == "replay" else _live
        result = run(cfg, recognizer, live_cfg, on_sample or (lambda s: None), on_frame)
    result.update(mode=cfg.mode, video=str(cfg.video), inference_fps_asked=cfg.inference_fps,
                  interval_s=cfg.interval_s, history_frames=len(recognizer.history.times),
                  memory=memory_figures(result["samples"], cfg.max_growth_mb))
    return result


class _Sampler:
    def __init__(self, on_sample: Callable[[dict], None]):
        self.t0, self.on_sample, self.samples = time.perf_counter(), on_sample, []

    def __call__(self, t_s: float, frames: int, label: str) -> None:
        s = {"label": label, "t_s": round(t_s, 3), "wall_s": round(time.perf_counter() - self.t0, 3),
             "frames": frames, "rss_mb": rss_mb()}
        self.samples.append(s)
        self.on_sample(s)


def _replay(cfg: SoakConfig, recognizer: Recognizer, live_cfg: LiveConfig, on_sample, on_frame) -> dict:
    source = VideoFileSource(cfg.video)
    try:
        fps = source.fps or GENERATED_FPS
        every = max(1, round(cfg.interval_s * fps))
        sample = _Sampler(on_sample)
        sample(0.0, 0, "start")

        def frame_done(i: int) -> None:
            if (i + 1) % every == 0:
                sample((i + 1) / fps, i + 1, "warm-up" if len(sample.samples) == 1 else "")
            if on_frame is not None:
                on_frame(i)

        mp4, jsonl = cfg.out / "soak.mp4", cfg.out / "soak.jsonl"
        outputs = Outputs(VideoSink(mp4, fps, source.size), JsonlSink(jsonl), log_timings=False)
        summary = run_replay(source, recognizer, live_cfg, outputs, on_frame=frame_done)
        sample(summary.frames / fps, summary.frames, "end")       # after the writers are closed
    finally:
        source.close()
    return {"video_seconds": summary.frames / fps, "video_fps": fps, "lost_frames": source.lost,
            "samples": sample.samples, "outputs": check_outputs(mp4, jsonl, summary.frames, summary.steps),
            **summary.to_dict()}


def _live(cfg: SoakConfig, recognizer: Recognizer, live_cfg: LiveConfig, on_sample, on_frame) -> dict:
    frames = _load_frames(cfg.video, cfg.max_frames)
    if not frames:
        raise ValueError(f"{cfg.video}: no decodable frames for the emulated camera")
    source = LiveSource(lambda: EmulatedCamera(frames, cfg.camera_fps), "emulated camera", max_reconnects=0)
    sample, rows, dropped, total = _Sampler(on_sample), [], 0, {"frames": 0, "steps": 0}
    try:
        sample(0.0, 0, "start")
        for i in range(max(1, round(cfg.minutes * 60.0 / cfg.interval_s))):
            summary = run_live(source, recognizer, live_cfg, Outputs(), None, cfg.interval_s)
            total["frames"] += summary.frames
            total["steps"] += summary.steps
            lat = summary.latency_ms
            rows.append({"interval": i, "display_fps": summary.display_fps, "inference_fps": summary.inference_fps,
                         "latency_p50_ms": lat.get("p50"), "latency_p95_ms": lat.get("p95"),
                         "dropped": summary.dropped - dropped})
            dropped = summary.dropped          # the source counts over its whole life
            sample(time.perf_counter() - sample.t0, total["frames"], "warm-up" if i == 0 else "")
            rows[-1]["rss_mb"] = sample.samples[-1]["rss_mb"]
            if summary.interrupted or not summary.end_reason.startswith("ran the requested"):
                break
    finally:
        source.close()
    sample(time.perf_counter() - sample.t0, total["frames"], "end")
    elapsed = sample.samples[-1]["wall_s"]
    return {"video_seconds": elapsed, "samples": sample.samples, "intervals": rows, "outputs": None,
            "frames": total["frames"], "steps": total["steps"], "dropped": dropped, "elapsed_s": elapsed,
            "display_fps": total["frames"] / max(elapsed, 1e-9), "inference_fps": total["steps"] / max(elapsed, 1e-9),
            "end_reason": summary.end_reason, "interrupted": summary.interrupted}
