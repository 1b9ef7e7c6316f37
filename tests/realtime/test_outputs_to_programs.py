"""Outputs to other programs: OSC to a real python-osc server on loopback, JSON lines on stdout
through a real pipe, the step records' keypoints, the sink queue, and the option checks that
come before a run starts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer
from typer.testing import CliRunner

from mgr.realtime.cli import app, optional_values
from mgr.realtime.events import EventConfig
from mgr.realtime.osc import OscSink, parse_host_port
from mgr.realtime.outputs import JsonlSink
from mgr.realtime.pipeline import LiveConfig, Recognizer
from mgr.realtime.runner import Outputs, run_replay
from mgr.realtime.sinks import DropOldest, QueuedSink, SinkError
from mgr.realtime.sources import VideoFileSource
from mgr.train.classes import class_names
from rt_helpers import FakePose, ScriptedBackend, write_video

runner = CliRunner()
FPS = 25.0
SCRIPT = [None] * 10 + [7] * 20 + [None] * 30      # one gesture of class 7 (see test_stream_events.py)


def clip_video(tmp_path, n=60):
    return write_video(tmp_path / "clip.mp4", [np.full((180, 320, 3), 90 + (i % 5), np.uint8) for i in range(n)], FPS)


class OscReceiver:
    """A python-osc UDP server on 127.0.0.1 that keeps every message it gets: (address, args)."""

    def __init__(self):
        self.messages: list[tuple[str, list]] = []
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *args: self.messages.append((address, list(args))))
        self.server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def of(self, address: str) -> list[list]:
        return [args for a, args in self.messages if a == address]


def test_osc_sends_top1_probs_person_per_step_and_each_event_start_and_end(tmp_path):
    cfg = LiveConfig(window_s=0.12, inference_fps=None, events=EventConfig(min_enter_s=0.08, min_duration_s=0.2))
    events = tmp_path / "events.jsonl"
    present = lambda i: not 40 <= i < 44         # noqa: E731 - four steps without a person
    with OscReceiver() as rx:
        sink = OscSink("127.0.0.1", rx.port, min_duration_s=cfg.events.min_duration_s)
        sink.open()
        steps = []
        outputs = Outputs(log_timings=False, events=JsonlSink(events), sinks=[sink], on_step=steps.append)
        source = VideoFileSource(clip_video(tmp_path))
        try:
            summary = run_replay(source, Recognizer(ScriptedBackend(SCRIPT), FakePose(present), cfg), cfg, outputs)
        finally:
            source.close()
        labelled = [p for p in steps if p.top]
        expected = 2 * len(labelled) + len(steps) + 2          # top1 + probs per labelled step, person per step, 2 events
        rx.wait_for(expected)
    assert summary.sinks["osc"] == {"sent": expected, "dropped": 0}
    assert len(rx.messages) == expected
    top1 = rx.of("/mgr/top1")
    assert [a[0] for a in top1] == [p.top[0][0] for p in labelled]
    assert all(isinstance(a[0], str) and isinstance(a[1], float) and len(a) == 2 for a in top1)
    assert [a[1] for a in top1] == pytest.approx([p.top[0][1] for p in labelled], abs=1e-6)   # float32 on the wire
    probs = rx.of("/mgr/probs")
    assert len(probs) == len(labelled) and all(len(a) == 33 for a in probs)
    assert np.allclose(probs[0], labelled[0].probs, atol=1e-6)
    person = rx.of("/mgr/person")
    assert [a for a in person] == [[int(p.keypoints is not None)] for p in steps] and [0] in person
    (ev,) = [json.loads(line) for line in events.read_text().splitlines()]
    (start,) = rx.of("/mgr/event/start")
    (end,) = rx.of("/mgr/event/end")
    assert start[0] == end[0] == ev["class"] == class_names()[7]
    assert isinstance(start[1], float) and start[1] > 0.9 and start[2] == pytest.approx(ev["start"], abs=1e-5)
    assert end[1:] == pytest.approx([ev["confidence"], ev["start"], ev["end"]], abs=1e-5)
    addresses = [a for a, _ in rx.messages]
    assert addresses.index("/mgr/event/start") < addresses.index("/mgr/event/end")


def test_osc_to_a_port_nobody_listens_on_drops_and_counts_and_never_stops_the_run(tmp_path):
    cfg = LiveConfig(window_s=0.12, inference_fps=None, events=EventConfig(min_duration_s=0.2))
    with OscReceiver() as rx:
        port = rx.port
    sink = OscSink("127.0.0.1", port, min_duration_s=0.2)    # the receiver is gone: ICMP port unreachable
    sink.open()
    source = VideoFileSource(clip_video(tmp_path, 20))
    steps = []
    try:
        summary = run_replay(source, Recognizer(ScriptedBackend([3]), FakePose(), cfg), cfg,
                             Outputs(sinks=[sink], on_step=steps.append))
    finally:
        source.close()
    assert summary.frames == 20 and summary.steps == 20 and summary.events == 1   # still open at the end: truncated
    stats = summary.sinks["osc"]
    # top1 + probs per labelled step, person per step, the event's start and end: each sent or counted as dropped
    assert stats["sent"] + stats["dropped"] == 2 * sum(bool(p.top) for p in steps) + 20 + 2 and stats["dropped"] > 0


def test_drop_oldest_queue_keeps_the_newest_items_and_counts_the_rest():
    q = DropOldest(3)
    for i in range(10):
        q.put(i)
    assert q.dropped == 7 and [q.get(0), q.get(0), q.get(0)] == [7, 8, 9] and q.get(0.01) is None
    q.put(1)
    q.close()
    q.put(2)                          # after close: ignored
    assert q.get() == 1 and q.get() is None


def test_a_sender_that_blocks_never_slows_the_loop():
    """A receiver that stops reading: the loop's puts return at once, the oldest items are dropped."""
    gate = threading.Event()

    class Stuck(QueuedSink):
        name = "stuck"

        def send(self, item):
            gate.wait(5)

    sink = Stuck(maxlen=8)
    sink.start_sender()
    t0 = time.perf_counter()
    for i in range(1000):
        sink.put(i)
    put_s = time.perf_counter() - t0
    gate.set()
    sink.close()
    assert put_s < 0.5                # 1000 puts against a sender stuck for 5 s
    assert sink.stats()["dropped"] >= 1000 - 8 - 1 and sink.stats()["sent"] <= 9


@pytest.mark.parametrize("text, option, default, expected", [
    ("127.0.0.1:9000", "--osc", None, ("127.0.0.1", 9000)),
    ("8765", "--serve", "127.0.0.1", ("127.0.0.1", 8765)),
    ("192.0.2.10:8765", "--serve", "127.0.0.1", ("192.0.2.10", 8765)),
    ("[::1]:9000", "--osc", None, ("::1", 9000)),
])
def test_host_port_parsing(text, option, default, expected):
    assert parse_host_port(text, option, default) == expected


@pytest.mark.parametrize("text, problem", [("9000", "give HOST:PORT"), ("localhost:osc", "must be a number"),
                                           ("localhost:70000", "0-65535")])
def test_host_port_errors_name_the_option_and_the_problem(text, problem):
    with pytest.raises(ValueError, match=problem) as e:
        parse_host_port(text, "--osc")
    assert "--osc" in str(e.value) and text in str(e.value)


def test_a_bad_osc_address_fails_before_the_model_or_video_opens(tmp_path):
    res = runner.invoke(app, ["replay", str(tmp_path / "missing.mp4"), "--model", str(tmp_path / "missing.pt"),
                              "--osc", "localhost:osc"])
    assert res.exit_code == 2 and "--osc" in res.output and "missing" not in res.output, res.output


def test_serve_token_without_serve_is_an_error(tmp_path):
    res = runner.invoke(app, ["replay", str(tmp_path / "x.mp4"), "--serve-token", "abc"])
    assert res.exit_code == 2 and "--serve-token needs --serve" in " ".join(res.output.split()), res.output


def test_an_unresolvable_osc_host_is_a_sink_error_naming_the_option():
    sink = OscSink("name with spaces", 9000, min_duration_s=0.4)
    with pytest.raises(SinkError, match="--osc name with spaces:9000: cannot resolve"):
        sink.open()


def test_bare_lsl_gets_its_default_name():
    assert optional_values(["mgr", "replay", "x.mp4", "--lsl"]) == ["mgr", "replay", "x.mp4", "--lsl", "mgr"]
    assert optional_values(["mgr", "replay", "x.mp4", "--lsl", "--osc", "h:1"])[4] == "mgr"
    assert optional_values(["mgr", "replay", "x.mp4", "--lsl", "lab"]) == ["mgr", "replay", "x.mp4", "--lsl", "lab"]


def test_stdout_json_through_a_pipe_carries_only_json_records_and_events(tmp_path, astronaut_video, checkpoint_factory,
                                                                        pose_model):
    """`mgr replay --stdout-json | python -c ...`: every stdout line is JSON; the same records as
    --jsonl and --events, keypoints included with --log-keypoints; the summary goes to stderr."""
    model = checkpoint_factory("skeleton")
    jsonl, events = tmp_path / "steps.jsonl", tmp_path / "events.jsonl"
    mgr = [sys.executable, "-m", "mgr.realtime.cli"]
    reader = "import json, sys; rows = [json.loads(line) for line in sys.stdin]; print(json.dumps(rows))"
    cmd = (" ".join(mgr + ["replay", str(astronaut_video), "--model", str(model), "--jsonl", str(jsonl),
                           "--events", str(events), "--stdout-json", "--log-keypoints", "--event-confirm", "0",
                           "--event-enter", "0.03", "--event-exit", "0.01", "--event-min", "0"])
           + f" | {sys.executable} -c '{reader}'")
    env = dict(os.environ, MGR_POSE_MODEL=str(pose_model), COLUMNS="200")
    res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    steps = [r for r in rows if "event" not in r]
    got_events = [r for r in rows if "event" in r]
    assert steps == [json.loads(line) for line in jsonl.read_text().splitlines()] and len(steps) == 24
    assert got_events == [json.loads(line) for line in events.read_text().splitlines()] and got_events
    assert "inference steps" in res.stderr and "stdout sent" in " ".join(res.stderr.split())
    with_person = [s for s in steps if s["person"]]
    assert with_person and all(s["keypoints"] is None for s in steps if not s["person"])
    for s in with_person:
        kp = np.array(s["keypoints"])
        assert kp.shape == (25, 3) and kp[:, 0].max() <= 640 and kp[:, 1].max() <= 480 and kp[:, 2].max() > 0.5


def test_replay_cli_sends_osc_lsl_and_serves_together(tmp_path, astronaut_video, checkpoint_factory):
    """The CLI wiring: --osc and --serve on one replay; OSC gets /mgr/top1 for every labelled step of the JSONL."""
    jsonl = tmp_path / "steps.jsonl"
    with OscReceiver() as rx:
        res = runner.invoke(app, ["replay", str(astronaut_video), "--model", str(checkpoint_factory("skeleton")),
                                  "--jsonl", str(jsonl), "--osc", f"127.0.0.1:{rx.port}", "--serve", "127.0.0.1:0",
                                  "--lsl", f"mgr-test-{os.getpid()}"])
        assert res.exit_code == 0, res.output
        steps = [json.loads(line) for line in jsonl.read_text().splitlines()]
        labelled = [s for s in steps if s["top5"]]
        rx.wait_for(2 * len(labelled) + len(steps))
    assert [a[0] for a in rx.of("/mgr/top1")] == [s["top5"][0]["name"] for s in labelled] and labelled
    out = " ".join(res.output.split())
    assert f"osc sent {2 * len(labelled) + len(steps)}, dropped 0" in out and "serve sent 0, dropped 0" in out
    assert f"lsl sent {len(steps)}, dropped 0" in out          # one sample per step, no event at these settings


def test_a_busy_serve_port_fails_before_the_camera_opens(checkpoint_factory):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = runner.invoke(app, ["live", "--camera", "97", "--headless", "--model", str(checkpoint_factory("skeleton")),
                                  "--serve", str(port)])
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and f"--serve 127.0.0.1:{port}: cannot listen" in out, out
    assert "camera" not in out.lower()


def _starts_and_events(stream, cfg, names, background):
    """Run the decoder over ``stream`` as the loop does and collect what OSC would announce."""
    from types import SimpleNamespace

    from mgr.realtime.events import EventDecoder
    from mgr.realtime.sinks import OpenedEvents
    decoder, opened = EventDecoder(cfg, names, background), OpenedEvents(cfg.min_duration_s)
    starts, events, late = [], [], []
    for i, probs in enumerate(stream):
        t = round(0.1 * i, 3)
        for ev in decoder.update(t, i, probs):      # OscSink.event: a start not yet sent goes just before the end
            late += [(ev.class_name, ev.start)] if opened.unannounced(ev) else []
            events.append(ev)
        o = opened.update(SimpleNamespace(event_view=decoder.view(), probs=probs))
        if o is not None:
            starts.append((o[0], o[2]))
    for ev in decoder.finish():
        late += [(ev.class_name, ev.start)] if opened.unannounced(ev) else []
        events.append(ev)
    return starts + late, [(e.class_name, e.start) for e in events]


def test_an_event_cut_back_by_a_rival_is_not_announced_before_it_is_safe():
    """A leads 0.7 s, then a rival streak begins (B at 0.5 over A at 0.36) and takes over: A is cut
    back to 0.6 s and dropped (min 0.8 s), so A's start must never have been sent."""
    names = ["A", "B", "no gesture"]
    A, AB, B = np.array([0.9, 0.05, 0.05]), np.array([0.36, 0.5, 0.14]), np.array([0.05, 0.9, 0.05])
    starts, events = _starts_and_events([A] * 7 + [AB] * 3 + [B] * 12, EventConfig(), names, 2)
    assert events == [("B", pytest.approx(0.7))] and [s[0] for s in starts] == ["B"]


@pytest.mark.parametrize("seed", range(40))
def test_every_announced_start_is_followed_by_its_end(seed):
    """Random step streams (three gesture classes and a background class, in runs of a few steps):
    every /mgr/event/start names an event that is later written, and every written event was announced."""
    rng = np.random.default_rng(seed)
    stream = []
    while len(stream) < 300:
        probs = rng.dirichlet(np.full(4, 0.3))
        stream += [np.clip(probs + rng.normal(0, 0.05, 4), 0, None)] * int(rng.integers(1, 12))
    cfg = EventConfig(enter=0.4, exit=0.3, min_enter_s=0.1, min_duration_s=0.5, merge_gap_s=0.3)
    starts, events = _starts_and_events(stream, cfg, ["A", "B", "C", "no gesture"], 3)
    assert events, "the stream should hold some events"
    written = {(n, round(s, 6)) for n, s in events}
    announced = [(n, round(s, 6)) for n, s in starts]
    assert set(announced) <= written and len(announced) == len(set(announced))
    assert written <= set(announced)


def test_ctrl_c_while_stdout_is_blocked_still_writes_that_line_whole(tmp_path, astronaut_bgr, checkpoint_factory,
                                                                      pose_model):
    """A reader that stops reading fills the pipe and the loop waits in its write; Ctrl-C then
    comes in the middle of a line. Every line of the JSONL is still on stdout, whole."""
    import signal
    from rt_helpers import pan_zoom_frames
    video = write_video(tmp_path / "long.mp4", pan_zoom_frames(astronaut_bgr, 150))
    jsonl = tmp_path / "steps.jsonl"
    env = dict(os.environ, MGR_POSE_MODEL=str(pose_model))
    proc = subprocess.Popen([sys.executable, "-m", "mgr.realtime.cli", "replay", str(video), "--model",
                             str(checkpoint_factory("skeleton")), "--jsonl", str(jsonl), "--stdout-json",
                             "--log-keypoints"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        # nobody reads: with keypoints a line is over 1 KB, so the 64 KiB pipe fills within ~60 steps
        while (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 70) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        out = proc.stdout.read().decode()
        proc.wait(60)
    finally:
        proc.kill()
    lines = out.splitlines()
    assert out.endswith("\n") and [json.loads(line) for line in lines] == \
        [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert 60 <= len(lines) < 150              # stopped by Ctrl-C, not at the end of the video
