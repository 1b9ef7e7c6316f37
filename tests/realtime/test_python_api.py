"""The Python API (README "Python API"): the README example runs as written; Recognizer.replay
yields what `mgr replay` logs; step() on images equals the loop; bad calls are clear errors."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from mgr.realtime import EventConfig, Recognizer
from mgr.realtime.cli import app
from mgr.realtime.outputs import prediction_record

runner = CliRunner()
README = Path(__file__).resolve().parents[2] / "README.md"
EVENTS = ["--event-enter", "0.03", "--event-exit", "0.01", "--event-confirm", "0", "--event-min", "0"]
EVENT_CFG = EventConfig(enter=0.03, exit=0.01, min_enter_s=0.0, min_duration_s=0.0)


def readme_example(tag: str) -> str:
    """The code block after ``<!-- example: TAG -->`` in the README, as written."""
    m = re.search(rf"<!-- example: {tag} -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert m, f"README has no example tagged {tag}"
    return m.group(1)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory, checkpoint_factory) -> Path:
    from mgr.engines.export import export_checkpoint
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return Path(export_checkpoint(checkpoint_factory("skeleton"), out).clip)


def test_the_readme_example_runs_as_written(tmp_path, onnx_model, astronaut_video, pose_model):
    for graph in onnx_model.parent.iterdir():                 # the graph set: model.onnx and the graphs beside it
        shutil.copy(graph, tmp_path / graph.name)
    shutil.copy(astronaut_video, tmp_path / "interview.mp4")
    (tmp_path / "example.py").write_text(readme_example("python-api"))
    env = dict(os.environ, MGR_POSE_MODEL=str(pose_model))
    res = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 24                                     # one line per frame, no event at default settings
    assert lines[0].split()[:2] == ["warming", "up"] and lines[-1].split()[0] in ("ok", "uncertain")
    assert all("no gesture" in line for line in lines)


def test_replay_yields_the_predictions_mgr_replay_logs(tmp_path, onnx_model, astronaut_video):
    jsonl, events = tmp_path / "cli.jsonl", tmp_path / "cli.events.jsonl"
    res = runner.invoke(app, ["replay", str(astronaut_video), "--model", str(onnx_model), "--jsonl", str(jsonl),
                              "--events", str(events), "--smooth", "2", *EVENTS])
    assert res.exit_code == 0, res.output
    api_events = tmp_path / "api.events.jsonl"
    with Recognizer.from_artifact(onnx_model, smoothing=2, events=EVENT_CFG) as rec:
        preds = list(rec.replay(astronaut_video, events=api_events))
        again = [prediction_record(p) for p in rec.replay(astronaut_video)]     # reset between videos
    records = [prediction_record(p) for p in preds]
    assert records == [json.loads(line) for line in jsonl.read_text().splitlines()] == again
    assert api_events.read_text() == events.read_text() and api_events.read_text()
    assert sum(p.status in ("ok", "uncertain") for p in preds) >= 10


def test_step_on_images_gives_what_replay_gives(astronaut_video, onnx_model):
    cap = cv2.VideoCapture(str(astronaut_video))
    frames = []
    while (frame := cap.read()[1]) is not None:
        frames.append(frame)
    cap.release()
    with Recognizer.from_artifact(onnx_model, events=EVENT_CFG) as rec:
        stepped = [rec.step(f, t_ms=40.0 * i) for i, f in enumerate(frames)]
        closed = rec.finish()
        replayed = list(rec.replay(astronaut_video))
    assert [prediction_record(p) for p in stepped] == [prediction_record(p) for p in replayed]
    assert [p.frame_index for p in stepped] == list(range(len(frames)))
    assert len(closed) == 1 and closed[0].truncated          # the event open at the end, closed by finish()


def test_step_errors_say_what_is_wrong(onnx_model):
    image = np.zeros((120, 160, 3), np.uint8)
    with Recognizer.from_artifact(onnx_model) as rec:
        rec.step(image, 100.0)
        with pytest.raises(ValueError, match="t_ms must increase"):
            rec.step(image, 100.0)
        with pytest.raises(ValueError, match="BGR uint8 image"):
            rec.step(image.astype(np.float32), 200.0)
        with pytest.raises(ValueError, match="BGR uint8 image"):
            rec.step(image[..., 0], 200.0)
        rec.reset()
        assert rec.step(image, 0.0).frame_index == 0        # a new stream starts its clock again
        auto = [rec.step(image) for _ in range(2)]          # no t_ms: the monotonic clock
        assert auto[1].timestamp_ms > auto[0].timestamp_ms


def test_leaving_a_replay_early_closes_its_files_whole(tmp_path, onnx_model, astronaut_video):
    jsonl, save = tmp_path / "early.jsonl", tmp_path / "early.mp4"
    with Recognizer.from_artifact(onnx_model) as rec:
        for n, _ in enumerate(rec.replay(astronaut_video, jsonl=jsonl, save=save), 1):
            if n == 5:
                break
        lines = jsonl.read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line)["frame"] == i for i, line in enumerate(lines))
    cap = cv2.VideoCapture(str(save))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    cap.release()


def test_replay_checks_its_output_paths_before_reading(tmp_path, onnx_model, astronaut_video):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with Recognizer.from_artifact(onnx_model) as rec:
        with pytest.raises(Exception, match="file") as e:
            next(rec.replay(astronaut_video, jsonl=blocker / "out.jsonl"))
        assert isinstance(e.value, (OSError, ValueError))


@pytest.mark.parametrize("read_ahead", [0, 3])
def test_ctrl_c_inside_a_replay_closes_its_files_and_reaches_the_caller(tmp_path, read_ahead):
    """Ctrl-C while a step runs (here: in the pose stage of the 6th frame) finalises the JSONL and
    the mp4, then raises KeyboardInterrupt in the caller's loop, so a batch over videos stops.

    With read-ahead, pose of the 6th frame runs on the read-ahead thread while the caller's thread
    is still on an earlier frame: the signal lands there, so the files end a few frames sooner,
    but they are still whole and agree with what was yielded."""
    import signal

    from mgr.realtime.pipeline import LiveConfig
    from rt_helpers import FakePose, ScriptedBackend, write_video

    def present(i):
        if i == 5:
            signal.raise_signal(signal.SIGINT)
        return True
    video = write_video(tmp_path / "v.mp4", [np.full((120, 160, 3), 50 + i, np.uint8) for i in range(20)])
    jsonl, save = tmp_path / "steps.jsonl", tmp_path / "out.mp4"
    cfg = LiveConfig(window_s=0.12, inference_fps=None, read_ahead=read_ahead)
    rec = Recognizer(ScriptedBackend([3]), FakePose(present), cfg)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for pred in rec.replay(video, jsonl=jsonl, save=save):
            seen.append(pred.frame_index)
    logged = [json.loads(line)["frame"] for line in jsonl.read_text().splitlines()]
    cap = cv2.VideoCapture(str(save))
    written = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    if read_ahead == 0:
        assert seen == logged == [0, 1, 2, 3, 4] and written == 5
    else:   # the interrupt lands somewhere in frames 0-5 of the caller's thread
        assert logged == list(range(len(logged))) and len(logged) <= 6
        assert seen == logged[:len(seen)] and len(logged) - len(seen) <= 1
        assert written in (len(logged) - 1, len(logged))
