"""`mgr bench live VIDEO`: the loop's speed, measured several ways in one run, against its floor.

0. the floor: decode + pose on the model's crop, nothing else (no loop can beat it); every
   figure is also given as a ratio to the floor's frame rate;
1. replay as shipped: every frame through pose and encode (at once, on two threads), then head,
   with decode and pose read ahead of the head and drawing (``LiveConfig.read_ahead``);
1b. ``mgr replay VIDEO --out --jsonl`` as shipped: 1. plus the annotated mp4 and the JSONL
   written (to a temporary folder), and the same without read-ahead (the loop before it);
2. replay, feature caching on, pose and encode one after the other, no read-ahead;
3. replay, feature caching off (naive): every step re-encodes all T frames (also serial);
4. live on an emulated camera that plays the video's frames at ``camera_fps`` in real time,
   with inference at ``inference_fps`` in its own thread: display rate, inference rate and
   the latency from frame capture to drawn labels.
The inference step's cost is encode + head per step, compared between 2 and 3 (both serial, so
pose does not compete with the encoder); caching should make it about T times cheaper.

5. replay as shipped again, with every network output on (README "Outputs to other programs"):
   LSL outlets, OSC to a python-osc receiver, and the --serve server with one client on /ws and
   one on /video, all on loopback. The loop's own time in the outputs' calls is summed per step
   (what they add to a step), and the /ws client stamps each step's record on arrival: the
   delay from the frame's capture to a client holding its record.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2

from mgr.train.machine import machine_info

from .pipeline import MODEL_STAGES, LiveConfig
from .runner import Outputs, RunSummary, open_recognizer, percentiles, run_live, run_replay
from .sources import EmulatedCamera, LiveSource, VideoFileSource


@dataclass(frozen=True)
class BenchLiveConfig:
    video: Path                    # input video (every frame is replayed twice, then looped live)
    camera_fps: float = 30.0       # rate of the emulated camera
    inference_fps: float | None = None   # live inference steps per second asked for (None: mgr live's default)
    live_seconds: float = 10.0     # length of the live part
    window_s: float | None = None  # sampling window (None: the artifact's default)
    max_live_frames: int = 300     # frames of the video kept in memory for the emulated camera
    outputs: bool = True           # also measure the replay with every network output on (5.)


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


def measure_floor(video: Path, reference_size, make_pose: Callable[[], object]) -> dict:
    """The floor under the loop: decode every frame and run pose on the model's crop, nothing else.

    Same source, same crop and colour conversion (``frame_crop``) and the same pose stage as a
    replay step, so no loop over this video can be faster than this on this machine.
    """
    from .pipeline import frame_crop, run_pose

    source, pose = VideoFileSource(video), make_pose()
    decode_ms, pose_ms, frames = [], [], 0
    try:
        t_start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            frame = source.read()
            if frame is None:
                break
            decode_ms.append((time.perf_counter() - t0) * 1000.0)
            _, crop = frame_crop(frame.image, reference_size)
            pose_ms.append(run_pose(pose, crop, frame.timestamp_ms)[1])
            frames += 1
        elapsed = time.perf_counter() - t_start
    finally:
        source.close()
        pose.close()
    return {"frames": frames, "elapsed_s": elapsed, "fps": frames / max(elapsed, 1e-9),
            "stage_ms": {"capture": percentiles(decode_ms), "pose": percentiles(pose_ms)}}


def floor_ratios(results: dict) -> dict:
    """Every run's frame rate (and inference rate) as a ratio to the floor's frame rate."""
    floor = results["floor"]["fps"]
    ratios = {}
    for name in ("replay", *FILE_RUNS, "replay_cached_serial", "replay_naive_serial", "replay_outputs", "live"):
        if name in results and floor > 0:
            r = results[name]
            ratios[name] = {"fps": r["display_fps"] / floor, "steps_per_s": r["inference_fps"] / floor}
    return ratios


FILE_RUNS = {"replay_files": 3, "replay_files_no_read_ahead": 0}   # run name -> read_ahead


def _measure_files(cfg: BenchLiveConfig, backend, make_pose, read_ahead: int) -> dict:
    """``mgr replay VIDEO --out OUT.mp4 --jsonl OUT.jsonl``: the shipped replay with both files written."""
    import tempfile

    from .runner import file_outputs

    replay_cfg = LiveConfig(window_s=cfg.window_s, inference_fps=None, read_ahead=read_ahead)
    with tempfile.TemporaryDirectory(prefix="mgr-bench-") as tmp:
        source = VideoFileSource(cfg.video)
        outputs = file_outputs(Path(tmp) / "out.mp4", Path(tmp) / "out.jsonl", None, source.fps or 25.0,
                               source.size, log_timings=False)
        return _measure(lambda rec: run_replay(source, rec, replay_cfg, outputs), source, backend, make_pose,
                        replay_cfg)


def run_bench_live(cfg: BenchLiveConfig, backend, make_pose: Callable[[], object]) -> dict:
    """Run the measurements. ``make_pose()`` gives a fresh pose stage (closed here)."""
    results: dict = {"video": str(cfg.video), "machine": machine_info(),
                     "model": getattr(backend, "source", None), "runtime": getattr(backend, "runtime", None)}
    results["floor"] = measure_floor(cfg.video, backend.metadata.preprocessing.reference_size, make_pose)
    for name, read_ahead in FILE_RUNS.items():
        results[name] = _measure_files(cfg, backend, make_pose, read_ahead)
    runs = (("replay", True, True), ("replay_cached_serial", True, False), ("replay_naive_serial", False, False))
    for name, cache, overlap in runs:
        replay_cfg = LiveConfig(window_s=cfg.window_s, inference_fps=None, cache_features=cache, overlap_encode=overlap,
                                read_ahead=LiveConfig.read_ahead if overlap else 0)
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
    if cfg.outputs:
        results["replay_outputs"] = _measure_outputs(cfg, backend, make_pose)
    results["ratio_to_floor"] = floor_ratios(results)
    return results


class _TimedSink:
    """A sink as the loop sees it, with the time the loop spends in its calls added to ``clock``."""

    def __init__(self, sink, clock: dict):
        self.sink, self.clock = sink, clock
        clock[sink.name] = 0.0
        self.name, self.wants_frames = sink.name, sink.wants_frames

    def _timed(self, method, *args) -> None:
        t0 = time.perf_counter()
        method(*args)
        self.clock[self.name] += time.perf_counter() - t0

    def step(self, pred, record) -> None:
        self._timed(self.sink.step, pred, record)

    def event(self, event, record, pred) -> None:
        self._timed(self.sink.event, event, record, pred)

    def frame(self, image, pred) -> None:
        self._timed(self.sink.frame, image, pred)

    def close(self) -> None:
        self.sink.close()

    def stats(self) -> dict:
        return self.sink.stats()


def _measure_outputs(cfg: BenchLiveConfig, backend, make_pose) -> dict:
    """Replay as shipped with LSL, OSC and --serve (two clients) on loopback: time added per step, WebSocket delay."""
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer
    from websockets.sync.client import connect

    from .lsl import LslSink
    from .osc import OscSink
    from .serve import WebServer

    received = {"osc": 0}
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda *a: received.__setitem__("osc", received["osc"] + 1))
    osc_rx = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=osc_rx.serve_forever, daemon=True).start()
    names = list(backend.metadata.class_names)
    replay_cfg = LiveConfig(window_s=cfg.window_s, inference_fps=None)
    sinks = [LslSink(f"mgr-bench-{time.monotonic_ns()}", names, 25.0),
             OscSink("127.0.0.1", osc_rx.server_address[1], replay_cfg.events.min_duration_s),
             WebServer("127.0.0.1", 0, class_names=names)]
    arrivals: dict[int, float] = {}
    captured: dict[int, float] = {}
    frames_seen = [0]
    try:
        for sink in sinks:
            sink.open()
        ws_url = sinks[2].url.replace("http://", "ws://").rstrip("/")

        def read_steps() -> None:
            import json
            with connect(ws_url + "/ws", max_size=None) as ws:
                for text in ws:
                    msg = json.loads(text)
                    if msg.get("type") == "step":
                        arrivals[msg["frame"]] = time.perf_counter()

        def read_video() -> None:
            with connect(ws_url + "/video", max_size=None) as ws:
                for _ in ws:
                    frames_seen[0] += 1

        readers = [threading.Thread(target=f, daemon=True) for f in (read_steps, read_video)]
        for r in readers:
            r.start()
        deadline = time.monotonic() + 5.0
        while sinks[2].clients() != {"ws": 1, "video": 1} and time.monotonic() < deadline:
            time.sleep(0.01)
        clock: dict[str, float] = {}
        per_step: dict[str, list] = {"all": []}

        def on_frame(_index: int) -> None:      # replay steps on every frame: one sum per step
            per_step["all"].append(sum(clock.values()) * 1000.0)
            for name in clock:
                per_step.setdefault(name, []).append(clock[name] * 1000.0)
                clock[name] = 0.0
        outputs = Outputs(sinks=[_TimedSink(s, clock) for s in sinks],
                          on_step=lambda p: captured.__setitem__(p.frame_index, p.captured_at))
        source = VideoFileSource(cfg.video)
        result = _measure(lambda rec: run_replay(source, rec, replay_cfg, outputs, on_frame=on_frame),
                          source, backend, make_pose, replay_cfg)      # closes every sink at the end
    finally:
        for sink in sinks:
            sink.close()
        osc_rx.shutdown()
        osc_rx.server_close()
    delays = [(arrivals[f] - captured[f]) * 1000.0 for f in captured if f in arrivals]
    result["outputs"] = {"added_ms_per_step": percentiles(per_step.pop("all")),
                         "added_ms_per_step_by_output": {k: percentiles(v) for k, v in per_step.items()},
                         "ws_delay_ms": percentiles(delays),
                         "ws_records": len(delays), "osc_received": received["osc"], "video_frames": frames_seen[0]}
    return result


def _measure(run: Callable, source, backend, make_pose, live_cfg: LiveConfig) -> dict:
    try:
        with open_recognizer(backend, make_pose, cfg=live_cfg) as recognizer:
            summary = run(recognizer)
    finally:
        source.close()
    out = summary.to_dict()
    out["step_ms"] = step_cost_ms(summary)
    return out
