"""The two drivers of the loop: replay (every frame, deterministic) and live (display decoupled).

Replay reads a file frame by frame and runs an inference step on every frame (or at
``inference_fps`` of file time), so the same input and artifact give the same JSONL.
Live reads the newest frame, draws it at once with the latest result, and hands frames
to an inference thread at most ``inference_fps`` times a second: a slow step delays the
labels, never the picture.
"""
from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .outputs import JsonlSink, VideoSink, prediction_record
from .overlay import OverlayInfo, render
from .pipeline import FRAME_STAGES, STAGES, STEP_STAGES, LiveConfig, Prediction, Recognizer
from .sources import Frame, LiveSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    frames: int                    # frames read and drawn
    steps: int                     # inference steps
    steps_with_person: int         # steps that found a person
    dropped: int                   # frames the source dropped (newer frame arrived first)
    elapsed_s: float               # wall time of the run
    display_fps: float             # frames / elapsed
    inference_fps: float           # steps / elapsed
    stage_ms: dict                 # stage -> {"p50", "p95", "mean"} over the run
    latency_ms: dict               # frame capture -> labels drawn: {"p50", "p95"} (empty if none)
    encoded_frames: int            # frames through the frame encoder
    end_reason: str                # why the run ended
    interrupted: bool              # Ctrl-C or q/Esc
    events: int = 0                # gesture events decoded (README "Events")
    sinks: dict = field(default_factory=dict)   # sink name -> {"sent", "dropped"} (outputs to other programs)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    a = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "mean": float(a.mean())}


class RateMeter:
    """Events per second over the last ``horizon_s`` seconds."""

    def __init__(self, horizon_s: float = 2.0):
        self.horizon_s = horizon_s
        self._times: deque = deque()

    def tick(self, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        self._times.append(now)
        while self._times and now - self._times[0] > self.horizon_s:
            self._times.popleft()

    @property
    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


@dataclass
class _Tally:
    """Mutable counters of one run (private to the drivers)."""
    started: float = field(default_factory=time.perf_counter)
    frames: int = 0
    steps: int = 0
    with_person: int = 0
    stage_ms: dict = field(default_factory=lambda: {k: [] for k in STAGES})
    latency_ms: list = field(default_factory=list)
    display: RateMeter = field(default_factory=RateMeter)
    inference: RateMeter = field(default_factory=RateMeter)
    last_ms: dict = field(default_factory=dict)

    def add_step(self, pred: Prediction) -> None:
        """Count a step; a stage's statistics only take the steps that ran it (no zeros)."""
        self.steps += 1
        self.with_person += pred.keypoints is not None
        self.inference.tick()
        for k in STEP_STAGES:
            if k in pred.ms:
                self.stage_ms[k].append(pred.ms[k])
            self.last_ms[k] = pred.ms.get(k, 0.0)

    def add_frame(self, capture_ms: float, draw_ms: float) -> None:
        self.frames += 1
        self.display.tick()
        for k, v in zip(FRAME_STAGES, (capture_ms, draw_ms)):
            self.stage_ms[k].append(v)
            self.last_ms[k] = v

    def summary(self, recognizer: Recognizer, dropped: int, end_reason: str, interrupted: bool,
                events: int = 0, sinks: dict | None = None) -> RunSummary:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return RunSummary(self.frames, self.steps, self.with_person, dropped, elapsed, self.frames / elapsed,
                          self.steps / elapsed, {k: percentiles(v) for k, v in self.stage_ms.items()},
                          percentiles(self.latency_ms), recognizer.encoded_frames, end_reason, interrupted, events,
                          dict(sinks or {}))


class _SigintShield:
    """Finalise the outputs even when Ctrl-C comes (again) meanwhile; remember that it came.

    Only the main thread can own signal handlers; elsewhere the shield does nothing.
    """

    def __init__(self):
        self.interrupted = False
        self._old = None

    def _handler(self, signum, frame) -> None:
        self.interrupted = True

    def __enter__(self) -> "_SigintShield":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._old if self._old is not None else signal.default_int_handler)


@dataclass
class Outputs:
    video: VideoSink | None = None      # annotated video
    jsonl: JsonlSink | None = None      # one line per inference step
    log_timings: bool = True            # put stage ms in the JSONL (replay: off, for reproducible files)
    events: JsonlSink | None = None     # one line per gesture event
    event_count: int = 0                # events written (or seen, without an event file)
    on_step: Callable[[Prediction], None] | None = None   # sees every logged step (evaluate-stream, the API)
    collected: list | None = None       # a list to keep every GestureEvent in, truncated ones included
    sinks: list = field(default_factory=list)   # outputs to other programs (realtime/sinks.py), opened by the caller
    log_keypoints: bool = False         # put the 25 Body_25 [x, y, c] (frame pixels) in every step record

    def write_events(self, events, pred: Prediction | None = None) -> None:
        for ev in events:
            self.event_count += 1
            if self.collected is not None:
                self.collected.append(ev)
            record = ev.to_record() if self.events is not None or self.sinks else None
            if self.events is not None:
                self.events.write(record)
            for sink in self.sinks:
                sink.event(ev, record, pred)

    def write_step(self, pred: Prediction, ms: dict | None) -> None:
        if self.jsonl is None and not self.sinks:
            return
        record = prediction_record(pred, ms, keypoints=self.log_keypoints)
        if self.jsonl is not None:
            self.jsonl.write(record)
        for sink in self.sinks:
            sink.step(pred, record)

    def write_frame(self, image: np.ndarray, pred: Prediction | None) -> None:
        for sink in self.sinks:
            if sink.wants_frames:
                sink.frame(image, pred)

    def sink_stats(self) -> dict:
        return {sink.name: sink.stats() for sink in self.sinks}

    def close(self) -> bool:
        """Close every sink, even when one fails; then raise the first failure.

        Ctrl-C while closing does not cut the mp4 short: it is noted and returned (True).
        """
        errors = []
        with _SigintShield() as shield:
            # the files first: whatever a network output does on closing, they are whole
            for sink in (self.events, self.jsonl, self.video, *self.sinks):
                if sink is not None:
                    try:
                        sink.close()
                    except OSError as e:
                        errors.append(e)
                    except Exception as e:      # noqa: BLE001 - a network output's failure must not leave the others open
                        log.warning("closing %s failed: %s", getattr(sink, "name", sink), e)
        if errors:
            raise errors[0]
        return shield.interrupted


def _draw(frame: Frame, pred: Prediction | None, tally: _Tally, dropped: int, mirror: bool) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    info = OverlayInfo(tally.display.rate, tally.inference.rate, dropped, dict(tally.last_ms),
                       events=pred.event_view if pred is not None else None)
    image = render(frame.image, pred, info, mirror)
    return image, (time.perf_counter() - t0) * 1000.0


def _log_step(outputs: Outputs, pred: Prediction, tally: _Tally) -> None:
    outputs.write_events(pred.events, pred)
    if outputs.on_step is not None:
        outputs.on_step(pred)
    ms = {k: tally.last_ms.get(k, 0.0) for k in STAGES} if outputs.log_timings else None
    outputs.write_step(pred, ms)


def run_replay(source, recognizer: Recognizer, cfg: LiveConfig, outputs: Outputs,
               on_frame: Callable[[int], None] | None = None, stop: threading.Event | None = None) -> RunSummary:
    """Every frame of a file through the loop; inference on every frame or at ``inference_fps`` of file time."""
    steps = iter_replay(source, recognizer, cfg, outputs, on_frame, stop)
    try:
        while True:
            next(steps)
    except StopIteration as done:
        return done.value
    finally:
        steps.close()     # a Ctrl-C between two steps still finalises every output


def iter_replay(source, recognizer: Recognizer, cfg: LiveConfig, outputs: Outputs,
                on_frame: Callable[[int], None] | None = None, stop: threading.Event | None = None):
    """The replay loop as a generator: yields each step's Prediction once it is logged; returns the RunSummary.

    ``run_replay`` (the CLI) and ``Recognizer.replay`` (the Python API) both run it. Closing the
    generator early finalises the outputs as a finished run does. Decoding and the first half
    of each step (framing, pose, encoding) run ``cfg.read_ahead`` frames ahead on a thread of
    their own (``ReadAhead``); this thread concludes the steps, draws and writes in file order,
    so the files are the same as with no read-ahead.
    """
    tally, pred, interrupted = _Tally(), None, False
    frames = ReadAhead(source, recognizer, StepGrid(cfg.inference_fps), cfg.read_ahead)
    try:
        while stop is None or not stop.is_set():
            item = frames.next()
            if item is None:
                break
            frame, capture_ms, obs = item
            if obs is not None:
                pred = recognizer.conclude(obs)
                tally.add_step(pred)
            image, draw_ms = _draw(frame, pred, tally, source.dropped, cfg.mirror)
            tally.add_frame(capture_ms, draw_ms)
            if obs is not None:
                _log_step(outputs, pred, tally)
            if outputs.video is not None:
                outputs.video.write(image)
            outputs.write_frame(image, pred)
            if on_frame is not None:
                on_frame(frame.index)
            if obs is not None:
                yield pred
        interrupted = stop is not None and stop.is_set()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        frames.close()
        interrupted = _finalise(recognizer, outputs) or interrupted
    reason = "interrupted" if interrupted else (source.end_reason or "end of input")
    return tally.summary(recognizer, source.dropped, reason, interrupted, outputs.event_count, outputs.sink_stats())


class StepGrid:
    """Which frames of a file get an inference step: all of them, or a fixed grid of file time.

    At ``fps`` steps per second the grid is 0, 1/fps, 2/fps ... s of file time, re-anchored only
    when a gap in the file leaves it more than a period behind. Depends on timestamps alone, so a
    replay steps on the same frames every time.
    """

    def __init__(self, fps: float | None):
        self.period_ms = 1000.0 / fps if fps else 0.0
        self._next_due: float | None = None

    def due(self, t_ms: float) -> bool:
        if self._next_due is not None and t_ms < self._next_due - 1e-6:
            return False
        if self._next_due is None or t_ms - self._next_due >= self.period_ms:
            self._next_due = t_ms
        self._next_due += self.period_ms
        return True


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class ReadAhead:
    """Replay's first half, ahead of its second: read a frame and, when a step is due, observe it.

    ``depth`` > 0: a thread reads and observes (``Recognizer.observe``: framing, pose, the
    encoding started) up to ``depth`` frames ahead, while the caller concludes, draws and writes
    the earlier ones, so pose never waits for the head, the overlay or the encoders. Pose
    releases the GIL, so on two cores the two halves run at once. ``depth`` 0: the same work,
    inline. ``next()`` gives (frame, capture ms, Observation or None) in file order, None at the
    end, and raises what the thread raised.
    """

    def __init__(self, source, recognizer: Recognizer, grid: StepGrid, depth: int = 3):
        self._source, self._recognizer, self._grid = source, recognizer, grid
        self._thread: threading.Thread | None = None
        if depth > 0:
            self._queue: queue.Queue = queue.Queue(maxsize=depth)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="read-ahead", daemon=True)
            self._thread.start()

    def _read(self):
        t0 = time.perf_counter()
        frame = self._source.read()
        capture_ms = (time.perf_counter() - t0) * 1000.0
        if frame is None:
            return None
        obs = self._recognizer.observe(frame) if self._grid.due(frame.timestamp_ms) else None
        return frame, capture_ms, obs

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._read()
                self._put(item)
                if item is None:
                    return
        except BaseException as e:     # noqa: BLE001 - raised again by next() on the caller's thread
            self._put(_Failed(e))

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self):
        if self._thread is None:
            return self._read()
        item = self._queue.get()
        if isinstance(item, _Failed):
            raise item.error
        return item

    def close(self) -> None:
        """Stop reading ahead; frames read but not taken are dropped (the run is over)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()


def file_outputs(save, jsonl, events, fps: float, size, log_timings: bool, timed: bool = False) -> Outputs:
    """The file outputs of a run (annotated mp4, step JSONL, event log), each where a path is given."""
    video = VideoSink(save, fps, size, timed=timed) if save is not None else None
    return Outputs(video, JsonlSink(jsonl) if jsonl is not None else None, log_timings,
                   JsonlSink(events) if events is not None else None)


def _finalise(recognizer: Recognizer, outputs: Outputs) -> bool:
    """Write the event still open (closed as truncated), then close every sink; True if Ctrl-C came meanwhile."""
    try:
        outputs.write_events(recognizer.finish())
    except BaseException:
        outputs.close()
        raise
    return outputs.close()


class AutoRate:
    """The live default (no ``--inference-fps``): a step on every camera frame while the machine keeps up.

    The loop measures, it does not guess: the worker adds each step's wall time. While the
    median of the last ``window`` steps fits in a frame interval, every frame gets a step (the
    camera sets the rate). When steps are slower, the period between them is ``headroom``
    times that median: as often as the machine allows, never back to back, so capture and
    display keep their share of the CPU. The first ``warmup`` steps (a runtime's first runs
    are slow) decide nothing.
    """

    def __init__(self, window: int = 15, headroom: float = 1.25, warmup: int = 5):
        self.headroom, self.warmup = headroom, warmup
        self._steps: deque[float] = deque(maxlen=window)
        self._seen = 0

    def add(self, step_s: float) -> None:
        self._seen += 1
        if self._seen > self.warmup:
            self._steps.append(step_s)

    @property
    def step_s(self) -> float:
        """The median step time of the window (0 before any step after the warm-up)."""
        return float(np.median(self._steps)) if self._steps else 0.0

    def limited(self, frame_s: float, was: bool = False) -> bool:
        """True when the steps, not the camera, set the rate (hysteresis around one frame interval)."""
        return frame_s > 0 and self.step_s > (0.9 if was else 1.0) * frame_s

    def period_s(self, limited: bool) -> float:
        """Seconds between steps: 0 (every frame offered) unless the steps set the rate."""
        return self.headroom * self.step_s if limited else 0.0


class InferenceWorker:
    """Runs ``recognizer.step`` in a thread on the newest offered frame, at most ``fps`` times a second.

    ``fps`` None: ``AutoRate``, a step on every frame while steps fit in a frame interval, else
    as often as the measured step time allows (logged when that starts and when it ends).
    """

    def __init__(self, recognizer: Recognizer, fps: float | None):
        self.recognizer = recognizer
        self.auto = AutoRate() if not fps else None
        self.period_s = 1.0 / fps if fps else 0.0
        self._offers: deque[float] = deque(maxlen=15)     # when frames were offered: the camera's interval
        self._limited = False
        self._cond = threading.Condition()
        self._pending: Frame | None = None
        self._busy = False
        self._next_due = -float("inf")
        self._result: Prediction | None = None
        self._unseen: list[Prediction] = []     # finished steps not yet drained: every step is logged
        self._seq = 0
        self._error: BaseException | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def offer(self, frame: Frame) -> bool:
        """Hand a frame over if the worker is idle and a step is due. Never blocks.

        Steps are due on a fixed grid of ``period_s`` (not ``period_s`` after the last
        offer): frames arrive at the camera's own rate, and "at least a period since the
        last step" would slip to the next frame every time (10/s asked, 7.5/s got at 30 fps).
        """
        now = time.perf_counter()
        with self._cond:
            self._offers.append(now)
            if self._busy or self._pending is not None or now < self._next_due - 1e-3:
                return False
            late = now - self._next_due
            self._next_due = self._next_due + self.period_s if late < self.period_s else now + self.period_s
            self._pending = frame
            self._cond.notify_all()
            return True

    def latest(self) -> tuple[Prediction | None, int]:
        """The newest result and its sequence number (changes once per finished step)."""
        with self._cond:
            if self._error is not None:
                raise RuntimeError(f"inference step failed: {self._error}") from self._error
            return self._result, self._seq

    def drain(self) -> list[Prediction]:
        """Every step finished since the last drain, oldest first (none is skipped: each carries its events)."""
        with self._cond:
            if self._error is not None:
                raise RuntimeError(f"inference step failed: {self._error}") from self._error
            out, self._unseen = self._unseen, []
            return out

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                frame, self._pending, self._busy = self._pending, None, True
            t0 = time.perf_counter()
            try:
                pred = self.recognizer.step(frame)
            except Exception as e:  # noqa: BLE001 - handed to the main thread by latest()
                with self._cond:
                    self._error, self._busy = e, False
                return
            with self._cond:
                self._result, self._seq, self._busy = pred, self._seq + 1, False
                self._unseen.append(pred)
                if self.auto is not None:
                    self._adapt(time.perf_counter() - t0)

    def _adapt(self, step_s: float) -> None:
        """AutoRate: the next period from the measured step time; say when the steps start or stop setting the rate."""
        self.auto.add(step_s)
        offers = self._offers
        frame_s = float(np.median(np.diff(offers))) if len(offers) >= 3 else 0.0
        limited = self.auto.limited(frame_s, self._limited)
        self.period_s = self.auto.period_s(limited)
        if limited != self._limited:
            self._limited = limited
            if limited:
                log.info("inference at %.1f steps/s, below the %.1f frames/s coming in: a step takes %.0f ms "
                         "(median); set --inference-fps to fix a rate", 1.0 / self.period_s, 1.0 / frame_s,
                         1000.0 * self.auto.step_s)
            else:
                log.info("inference back on every frame (%.1f frames/s): a step takes %.0f ms (median)",
                         1.0 / frame_s, 1000.0 * self.auto.step_s)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until the offered frame, if any, has been processed; False on timeout."""
        deadline = time.perf_counter() + timeout_s
        with self._cond:
            while (self._busy or self._pending is not None) and self._error is None:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=10.0)


def _pace(frame: Frame, start: float, first_ts: float) -> None:
    """Play a file at its own rate in live mode (a camera paces itself)."""
    delay = (frame.timestamp_ms - first_ts) / 1000.0 - (time.perf_counter() - start)
    if delay > 0:
        time.sleep(delay)


def run_live(source, recognizer: Recognizer, cfg: LiveConfig, outputs: Outputs,
             show: Callable[[np.ndarray], bool] | None = None, max_seconds: float | None = None,
             stop: threading.Event | None = None) -> RunSummary:
    """The live loop. ``show`` displays a frame and returns False to quit (q/Esc); None is headless."""
    tally, worker, seen = _Tally(), InferenceWorker(recognizer, cfg.inference_fps), 0
    paced, first_ts, reason = not isinstance(source, LiveSource), None, None
    try:
        while True:
            if stop is not None and stop.is_set():
                reason = "stopped"
                break
            if max_seconds is not None and time.perf_counter() - tally.started >= max_seconds:
                reason = f"ran the requested {max_seconds:g} s"
                break
            t0 = time.perf_counter()
            frame = source.read()
            capture_ms = (time.perf_counter() - t0) * 1000.0
            if frame is None:
                break
            if paced:                          # a file plays at its own rate; a camera paces itself
                first_ts = frame.timestamp_ms if first_ts is None else first_ts
                _pace(frame, tally.started, first_ts)
            worker.offer(frame)
            seen = _show_frame(frame, worker, seen, tally, outputs, source.dropped, capture_ms, cfg.mirror, show)
            if seen < 0:
                reason = "quit by the user"
                break
        if reason is None and worker.wait_idle(5.0):   # the input ended: keep the step still running
            _log_finished(worker, tally, outputs)
    except KeyboardInterrupt:
        reason = "interrupted (Ctrl-C)"
    finally:
        worker.close()
        if _finalise(recognizer, outputs) and reason is None:
            reason = "interrupted (Ctrl-C)"
    interrupted = reason is not None and not reason.startswith("ran the requested")
    return tally.summary(recognizer, source.dropped, reason or source.end_reason or "end of input", interrupted,
                         outputs.event_count, outputs.sink_stats())


def _log_finished(worker: InferenceWorker, tally: _Tally, outputs: Outputs) -> None:
    """Count and log every step the worker finished since the last call (its latency: until now)."""
    for pred in worker.drain():
        tally.add_step(pred)
        tally.latency_ms.append((time.perf_counter() - pred.captured_at) * 1000.0)
        _log_step(outputs, pred, tally)


def _show_frame(frame: Frame, worker: InferenceWorker, seen: int, tally: _Tally, outputs: Outputs,
                dropped: int, capture_ms: float, mirror: bool, show) -> int:
    """Draw a frame with the newest result, log a result drawn for the first time, write, display.

    Returns the sequence number of the result drawn, or -1 when the user quit.
    """
    _log_finished(worker, tally, outputs)
    pred, seq = worker.latest()
    image, draw_ms = _draw(frame, pred, tally, dropped, mirror)
    tally.add_frame(capture_ms, draw_ms)
    if outputs.video is not None:
        outputs.video.write(image, frame.timestamp_ms)
    outputs.write_frame(image, pred)
    if show is not None and not show(image):
        return -1
    return seq


def open_recognizer(model, pose_model, num_poses: int = 1, threads: int | None = None,
                    cfg: LiveConfig | None = None, *, device: str = "cpu", mode: str = "video") -> Recognizer:
    """``Recognizer.from_artifact`` with the drivers' positional arguments (a context manager; closes what it opened).

    ``model``: an artifact path, or a loaded backend shared by the caller; ``pose_model``: a pose
    .task path, or a factory of pose stages.
    """
    return Recognizer.from_artifact(model, pose_model=pose_model, num_poses=num_poses, threads=threads,
                                    config=cfg if cfg is not None else LiveConfig(), device=device, mode=mode)
