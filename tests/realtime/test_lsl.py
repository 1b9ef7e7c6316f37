"""LSL output: real pylsl outlets read back by real pylsl inlets, on this machine only.

tests/conftest.py points LSLAPICFG, before pylsl is first used, at a file that keeps discovery
on this machine and IPv4 only, so the test streams are never advertised on the network.
Every test uses stream names of its own.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
import xml.etree.ElementTree as ET

import numpy as np
import pylsl
import pytest
from pylsl.util import LostError

from mgr.realtime.body25 import center_crop_box
from mgr.realtime.events import BACKGROUND_NAME, EventConfig, GestureEvent
from mgr.realtime.lsl import LslSink
from mgr.realtime.pipeline import LiveConfig, Prediction, Recognizer
from mgr.realtime.runner import Outputs, run_replay
from mgr.realtime.sinks import SinkError, lsl_clock_offset
from mgr.realtime.sources import VideoFileSource
from mgr.train.classes import class_names
from mgr.train.layout import JOINT_NAMES
from rt_helpers import FakePose, ScriptedBackend, write_video

EVENT_KEYS = ["event", "class", "index", "start", "end", "confidence", "peak", "start_frame", "end_frame"]
TIMEOUT = 5.0


def unique(stem: str) -> str:
    return f"mgr-test-{stem}-{uuid.uuid4().hex[:10]}"


def connect(name: str) -> pylsl.StreamInlet:
    """An inlet on the stream called ``name``, connected before anything is pushed.

    recover=False: once the outlet is gone a pull raises LostError instead of waiting for the
    stream to come back, so a test never hangs on a closed sink.
    """
    found = pylsl.resolve_byprop("name", name, 1, TIMEOUT)
    assert len(found) == 1, f"stream {name} not found on this machine"
    inlet = pylsl.StreamInlet(found[0], max_buflen=60, recover=False)
    inlet.open_stream(timeout=TIMEOUT)
    return inlet


def pull(inlet: pylsl.StreamInlet, n: int) -> tuple[list, list]:
    """Exactly the next ``n`` samples (fails after TIMEOUT seconds without them)."""
    samples, stamps = [], []
    deadline = time.monotonic() + TIMEOUT
    while len(stamps) < n and time.monotonic() < deadline:
        chunk, ts = inlet.pull_chunk(timeout=0.1, max_samples=n - len(stamps))
        samples += chunk
        stamps += ts
    assert len(stamps) == n, f"received {len(stamps)} of {n} samples"
    return samples, stamps


def eventually(condition, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def disconnect(*inlets: pylsl.StreamInlet) -> None:
    for inlet in inlets:
        inlet.close_stream()


def desc_of(inlet: pylsl.StreamInlet) -> ET.Element:
    return ET.fromstring(inlet.info(timeout=TIMEOUT).as_xml())


def prediction(captured_at: float, probs=None, keypoints=None, frame: int = 0) -> Prediction:
    status = "ok" if probs is not None else ("warming up" if keypoints is not None else "no person")
    return Prediction(status, (), keypoints, center_crop_box((640, 480), (320, 176)), frame, frame * 40.0,
                      captured_at, probs=probs)


@pytest.fixture
def opened():
    """make(classes, rate) -> an opened LslSink of a stream name of its own; each is closed after the test."""
    sinks = []

    def make(classes=("tap", "scratch", "rub"), rate=10.0, **kw):
        sink = LslSink(unique("s"), list(classes), rate, **kw)
        sink.open()
        sinks.append(sink)
        return sink
    yield make
    for sink in sinks:
        sink.close()


def test_streams_describe_their_channels_classes_and_producer(opened):
    classes = ["tap", "scratch", "rub"]
    sink = opened(classes, 12.5)
    data, markers = connect(sink.stream_name), connect(f"{sink.stream_name}-markers")
    try:
        info = data.info(timeout=TIMEOUT)
        assert (info.type(), info.channel_count(), info.nominal_srate(), info.channel_format()) == \
               ("MicroGesture", 3 + 75, 12.5, pylsl.cf_float32)
        root = desc_of(data)
        assert root.findtext("v6data_port") == "0"      # the test configuration is in force: no IPv6
        channels = root.findall("desc/channels/channel")
        labels = [c.findtext("label") for c in channels]
        joints = [f"{j}_{v}" for j in JOINT_NAMES for v in "xyc"]
        assert labels == classes + joints and labels[3:6] == ["Nose_x", "Nose_y", "Nose_c"]
        assert [c.findtext("type") for c in channels] == ["probability"] * 3 + ["x", "y", "confidence"] * 25
        assert [c.findtext("unit") for c in channels] == ["normalized"] * 3 + ["pixels", "pixels", "normalized"] * 25
        assert [c.text for c in root.findall("desc/classes/class")] == classes
        assert root.findtext("desc/acquisition/manufacturer") == "mgr"

        minfo = markers.info(timeout=TIMEOUT)
        assert (minfo.type(), minfo.channel_count(), minfo.nominal_srate(), minfo.channel_format()) == \
               ("Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string)
        mroot = desc_of(markers)
        assert mroot.findtext("desc/mgr/schema") == "event"
        assert [c.text for c in mroot.findall("desc/classes/class")] == classes
        assert mroot.findtext("source_id") != root.findtext("source_id")
    finally:
        disconnect(data, markers)
    # closed: liblsl no longer advertises either stream (a resolver forgets a stream 0.5 s after its last answer)
    resolvers = [pylsl.ContinuousResolver(prop="name", value=n, forget_after=0.5)
                 for n in (sink.stream_name, f"{sink.stream_name}-markers")]
    assert eventually(lambda: all(r.results() for r in resolvers))
    sink.close()
    assert eventually(lambda: not any(r.results() for r in resolvers))


def test_steps_and_events_carry_values_nan_and_capture_time_stamps(opened):
    sink = opened(["tap", "scratch", "rub"])
    data, markers = connect(sink.stream_name), connect(f"{sink.stream_name}-markers")
    try:
        t0 = time.perf_counter() - 5.0                  # captured a while ago: stamps are capture times
        kp = np.arange(75, dtype=np.float32).reshape(25, 3) + 0.5
        probs = np.array([0.7, 0.2, 0.1], np.float32)
        preds = [prediction(t0, probs, kp, 0),           # labels and a person
                 prediction(t0 + 0.1, None, kp, 1),      # warming up: a person, no labels yet
                 prediction(t0 + 0.2, None, None, 2)]    # nobody
        for p in preds:
            sink.step(p, {})
        ev = GestureEvent("scratch", 1, 1.2, 1.8, 0.61, 0.9, 30, 45, detected=1.4)
        truncated = GestureEvent("rub", 2, 2.0, 2.4, 0.55, 0.7, 50, 60, truncated=True)
        sink.event(ev, ev.to_record(), preds[1])
        before = pylsl.local_clock()
        sink.event(truncated, truncated.to_record(), None)     # the run ended with it open
        after = pylsl.local_clock()

        samples, stamps = pull(data, 3)
        np.testing.assert_array_equal(samples[0], np.concatenate([probs, kp.reshape(-1)]))
        assert np.isnan(samples[1][:3]).all() and samples[1][3:] == pytest.approx(kp.reshape(-1).tolist())
        assert np.isnan(samples[2]).all() and len(samples[2]) == 78
        to_lsl = lsl_clock_offset()
        assert stamps[0] == pytest.approx(to_lsl(t0), abs=2e-3)
        assert np.diff(stamps) == pytest.approx([0.1, 0.1], abs=1e-6)

        strings, mstamps = pull(markers, 2)
        assert mstamps[0] == pytest.approx(stamps[1], abs=1e-9)   # the capture time of the step that finished it
        assert before <= mstamps[1] <= after
        assert [json.loads(s[0]) for s in strings] == [ev.to_record(), truncated.to_record()]
        assert ", " not in strings[0][0] and ": " not in strings[0][0]   # compact JSON
    finally:
        disconnect(data, markers)
    sink.close()
    assert sink.stats() == {"sent": 5, "dropped": 0}


def test_a_marker_is_the_event_record_as_json():
    sink = LslSink(unique("m"), ["tap"], 10.0)
    sink.open()
    markers = connect(f"{sink.stream_name}-markers")
    try:
        ev = GestureEvent("tap", 0, 0.5, 1.25, 0.8123456, 0.95, 12, 31, detected=0.7)
        sink.event(ev, ev.to_record(), None)
        (sample,), _ = pull(markers, 1)
        record = json.loads(sample[0])
        assert list(record)[:len(EVENT_KEYS)] == EVENT_KEYS
        assert record["event"] == "gesture" and record["class"] == "tap" and record["index"] == 0
        assert (record["start"], record["end"], record["start_frame"], record["end_frame"]) == (0.5, 1.25, 12, 31)
        assert record["confidence"] == 0.81235 and record["peak"] == 0.95 and record["detected"] == 0.7
    finally:
        disconnect(markers)
        sink.close()


@pytest.mark.parametrize("name, rate, problem", [("", 10.0, "empty"), ("   ", 10.0, "empty"),
                                                  ("ok", -1.0, "rate"), ("ok", float("nan"), "rate")])
def test_a_stream_that_cannot_be_made_is_a_sink_error_naming_the_option(name, rate, problem):
    sink = LslSink(name, ["tap"], rate)
    with pytest.raises(SinkError, match="--lsl") as err:
        sink.open()
    assert problem in str(err.value)
    assert sink._thread is None                                # nothing left running
    sink.close()


def test_joint_names_must_be_a_whole_body25():
    with pytest.raises(ValueError, match="25"):
        LslSink("x", ["tap"], 10.0, body25_names=["Nose"])


# ----------------------------------------------------------------------------- through the replay loop
class Receiver(threading.Thread):
    """Pulls both streams while the run goes on, until the sink closes them."""

    def __init__(self, data: pylsl.StreamInlet, markers: pylsl.StreamInlet):
        super().__init__(daemon=True)
        self.inlets = {"data": data, "markers": markers}
        self.got = {"data": ([], []), "markers": ([], [])}

    def run(self):
        live = dict(self.inlets)
        while live:
            for key, inlet in list(live.items()):
                try:
                    chunk, ts = inlet.pull_chunk(timeout=0.02)
                except LostError:          # the sink closed the stream: everything sent was read
                    del live[key]
                    continue
                self.got[key][0].extend(chunk)
                self.got[key][1].extend(ts)


def test_replay_sends_one_sample_per_step_and_one_marker_per_event(tmp_path):
    fps, n = 25.0, 50
    frames = [np.full((180, 320, 3), 90 + (i % 5), np.uint8) for i in range(n)]
    video = write_video(tmp_path / "clip.mp4", frames, fps)
    names = list(class_names()) + [BACKGROUND_NAME]
    # a finished gesture of class 7, then one of class 3 still open when the file ends
    script = [None] * 6 + [7] * 12 + [None] * 8 + [3] * 40
    cfg = LiveConfig(window_s=0.12, inference_fps=None, events=EventConfig(min_enter_s=0.08, min_duration_s=0.2))
    sink = LslSink(unique("replay"), names, fps)
    sink.linger_s = 1.0                        # time enough for the receiver to read the end of the run
    sink.open()
    receiver = Receiver(connect(sink.stream_name), connect(f"{sink.stream_name}-markers"))
    receiver.start()
    steps, events = [], []
    outputs = Outputs(log_timings=False, on_step=steps.append, collected=events, sinks=[sink])
    source = VideoFileSource(video)
    try:
        summary = run_replay(source, Recognizer(ScriptedBackend(script), FakePose(), cfg), cfg, outputs)
    finally:
        source.close()
        sink.close()
    ended = pylsl.local_clock()
    receiver.join(TIMEOUT)
    assert not receiver.is_alive()

    samples, stamps = receiver.got["data"]
    assert summary.steps == len(steps) == n and len(stamps) == n          # one sample per step, none lost
    assert summary.sinks == {"lsl": {"sent": n + 2, "dropped": 0}}
    assert all(len(s) == len(names) + 75 for s in samples)
    with_labels = [i for i, p in enumerate(steps) if p.probs is not None]
    assert len(with_labels) >= n - 5
    for i in with_labels:
        np.testing.assert_allclose(samples[i][:len(names)], steps[i].probs, rtol=1e-6)
        np.testing.assert_allclose(samples[i][len(names):], steps[i].keypoints.reshape(-1), rtol=1e-6)
    assert all(np.isnan(samples[i][:len(names)]).all() for i in range(n) if i not in with_labels)
    # stamps: the frames' capture times on the LSL clock, so spaced as the captures were
    captured = np.array([p.captured_at for p in steps])
    assert (np.diff(stamps) > 0).all()
    np.testing.assert_allclose(np.diff(stamps), np.diff(captured), atol=1e-6)
    assert stamps[0] == pytest.approx(lsl_clock_offset()(captured[0]), abs=2e-3)

    strings, mstamps = receiver.got["markers"]
    records = [json.loads(s[0]) for s in strings]
    assert [e.class_name for e in events] == [names[7], names[3]] and events[1].truncated
    assert records == [e.to_record() for e in events]                    # one marker per event, in order
    finished_by = next(i for i, p in enumerate(steps) if p.events)
    assert mstamps[0] == pytest.approx(stamps[finished_by], abs=1e-9)     # the step that finished it
    assert stamps[-1] <= mstamps[1] <= ended                             # closed when the run ended
