"""Events in the loop: the event log and the JSONL "state" of replay and live, truncation at the
end, a video without a person, and the --events path checks before a run starts."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mgr.realtime.cli import app
from mgr.realtime.events import BACKGROUND_NAME, NO_GESTURE, EventConfig
from mgr.realtime.outputs import JsonlSink
from mgr.realtime.pipeline import LiveConfig, Recognizer
from mgr.realtime.runner import Outputs, run_live, run_replay
from mgr.realtime.sources import VideoFileSource
from mgr.train.classes import class_names
from rt_helpers import FakePose, ScriptedBackend, write_video

FPS = 25.0
EVENT_KEYS = ["event", "class", "index", "start", "end", "confidence", "peak", "start_frame", "end_frame"]


def clip_video(tmp_path, n=60):
    frames = [np.full((180, 320, 3), 90 + (i % 5), np.uint8) for i in range(n)]
    return write_video(tmp_path / "clip.mp4", frames, FPS)


def run(driver, video, script, tmp_path, name, present=lambda i: True):
    cfg = LiveConfig(window_s=0.12, inference_fps=None, events=EventConfig(min_enter_s=0.08, min_duration_s=0.2))
    events, jsonl = tmp_path / f"{name}.events.jsonl", tmp_path / f"{name}.jsonl"
    outputs = Outputs(jsonl=JsonlSink(jsonl), log_timings=False, events=JsonlSink(events))
    source = VideoFileSource(video)
    try:
        rec = Recognizer(ScriptedBackend(script), FakePose(present), cfg)
        summary = driver(source, rec, cfg, outputs)
    finally:
        source.close()
    read = lambda p: [json.loads(line) for line in p.read_text().splitlines()]   # noqa: E731
    return summary, read(events), read(jsonl)


# warming up (window 0.12 s at 25 fps): 4 frames; then the n-th clip is frame n + 3
SCRIPT = [None] * 10 + [7] * 20 + [None] * 30


def test_replay_writes_one_event_per_gesture_and_the_state_per_step(tmp_path):
    summary, events, steps = run(run_replay, clip_video(tmp_path), SCRIPT, tmp_path, "r")
    assert summary.events == 1 and len(events) == 1
    ev = events[0]
    assert list(ev) == EVENT_KEYS + ["detected"]
    name = class_names()[7]
    assert ev["class"] == name and ev["index"] == 7
    # clips 10..29 ran on frames 13..32; each is placed at the centre of its 0.12 s window (1.5 frames back)
    assert ev["start"] == pytest.approx(13 / FPS - 0.06) and ev["end"] == pytest.approx(32 / FPS - 0.06)
    assert abs(ev["start_frame"] - 11.5) == 0.5 and abs(ev["end_frame"] - 30.5) == 0.5
    # reported on the step that confirmed it: min_enter_s (0.08 s) after its first step
    assert ev["detected"] == pytest.approx(15 / FPS)
    assert ev["peak"] > 0.98 and ev["confidence"] > 0.98   # softmax of a logit 8 over 33 classes
    states = [s["state"] for s in steps]
    assert states[:13] == [NO_GESTURE] * 13
    # the event opens after min_enter_s (0.08 s = 2 steps) and closes after its last step
    assert states[15:33] == [name] * 18 and states[33:] == [NO_GESTURE] * (60 - 33)
    assert [s["top5"][0]["name"] for s in steps if s["status"] == "ok"][:10] == [BACKGROUND_NAME] * 10


def test_live_and_replay_of_the_same_file_give_the_same_events(tmp_path):
    video = clip_video(tmp_path)
    script = [None] * 6 + [3] * 12 + [None] * 8 + [11] * 15 + [None] * 30
    _, replayed, _ = run(run_replay, video, script, tmp_path, "replay")
    summary, live, _ = run(lambda s, r, c, o: run_live(s, r, c, o), video, script, tmp_path, "live")
    assert summary.steps == 60                       # a step on every frame: the same stream as replay
    assert [e["class"] for e in replayed] == [class_names()[3], class_names()[11]]
    assert live == replayed


def test_a_gesture_still_open_at_the_end_is_closed_as_truncated(tmp_path):
    summary, events, _ = run(run_replay, clip_video(tmp_path), [None] * 20 + [5] * 60, tmp_path, "t")
    assert len(events) == 1 and events[0]["truncated"] is True
    assert abs(events[0]["end_frame"] - 57.5) == 0.5 and events[0]["index"] == 5   # the last window's centre


def test_a_video_without_a_person_gives_no_events(tmp_path):
    summary, events, steps = run(run_replay, clip_video(tmp_path), [4] * 60, tmp_path, "n", present=lambda i: False)
    assert events == [] and summary.events == 0 and summary.steps == 60
    assert {s["state"] for s in steps} == {NO_GESTURE} and {s["status"] for s in steps} == {"no person"}


@pytest.mark.parametrize("command", ["replay", "live"])
def test_events_path_under_a_file_is_an_error_before_the_run(tmp_path, command):
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the folder should be")
    target = blocker / "sub" / "events.jsonl"
    args = (["replay", str(tmp_path / "missing.mp4")] if command == "replay"
            else ["live", "--video", str(tmp_path / "missing.mp4"), "--headless"])
    res = CliRunner().invoke(app, [*args, "--events", str(target)])
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert str(target) in out and "is a file" in out
    assert "missing.mp4" not in out                  # the output path is checked before the video is opened


def test_events_path_in_a_folder_that_cannot_be_written(tmp_path, monkeypatch):
    import os
    folder = tmp_path / "ro"
    folder.mkdir()
    real_access = os.access
    # the tests may run as root, for whom a mode-0500 folder is still writable: say what a user sees
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(folder) else real_access(p, mode))
    res = CliRunner().invoke(app, ["replay", str(tmp_path / "missing.mp4"), "--events", str(folder / "e.jsonl")])
    assert res.exit_code == 2
    assert "not writable" in " ".join(res.output.split())
