"""Replay's read-ahead: decode and the first half of each step (framing, pose, encoding) on a
thread of their own, ahead of the head, drawing and writing. The files must be exactly those of
the loop without it, the two halves must really overlap, and a failure on the read-ahead thread
must reach the caller with the files closed."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from mgr.engines.export import export_checkpoint
from mgr.realtime.pipeline import LiveConfig, Recognizer
from mgr.realtime.runner import Outputs, StepGrid, file_outputs, run_replay
from mgr.realtime.sources import VideoFileSource
from rt_helpers import FakeBackend, FakePose, pan_zoom_frames, write_video


def test_read_ahead_writes_the_same_files_as_the_loop_without_it(tmp_path, astronaut_bgr, checkpoint_factory):
    """Real pose model, fusion model's ONNX set (pose and the encoder both on threads): same steps, same
    JSONL and event log byte for byte, with and without read-ahead, at every frame and at 10 steps/s."""
    (tmp_path / "onnx").mkdir()
    onnx = export_checkpoint(checkpoint_factory("fusion"), tmp_path / "onnx" / "model.onnx").clip
    video = write_video(tmp_path / "v.mp4", pan_zoom_frames(astronaut_bgr, 30), fps=25)

    for fps in (None, 10.0):
        runs = []
        for read_ahead in (0, 3):
            jsonl, events = tmp_path / f"r{read_ahead}.jsonl", tmp_path / f"r{read_ahead}.ev.jsonl"
            cfg = LiveConfig(window_s=0.4, inference_fps=fps, read_ahead=read_ahead)
            with Recognizer.from_artifact(onnx, config=cfg) as rec:
                preds = list(rec.replay(video, jsonl=jsonl, events=events))
            runs.append((preds, jsonl.read_text(), events.read_text()))
        (p0, j0, e0), (p3, j3, e3) = runs
        assert j3 == j0 and e3 == e0
        assert [p.frame_index for p in p3] == [p.frame_index for p in p0]
        assert len(p0) == (30 if fps is None else 12)
        assert sum(p.status in ("ok", "uncertain") for p in p3) >= len(p3) // 2    # the real pose found her


class _GatedPose(FakePose):
    """A pose stage that records which frames it has seen, so the test can wait for one."""

    def __init__(self):
        super().__init__()
        self.seen = threading.Condition()

    def __call__(self, image_rgb, timestamp_ms=None):
        out = super().__call__(image_rgb, timestamp_ms)
        with self.seen:
            self.seen.notify_all()
        return out

    def wait_for(self, calls: int, timeout_s: float) -> bool:
        with self.seen:
            return self.seen.wait_for(lambda: self.calls >= calls, timeout_s)


@pytest.mark.parametrize("read_ahead", [0, 2])
def test_pose_of_the_next_frame_runs_while_this_frame_is_drawn_and_written(tmp_path, read_ahead):
    """While frame n is written (``on_frame`` is the end of its second half), pose has already run
    on frame n+1: the halves overlap. Without read-ahead it cannot (the wait times out)."""
    video = write_video(tmp_path / "v.mp4", [np.full((120, 160, 3), 40 + 5 * i, np.uint8) for i in range(8)])
    pose = _GatedPose()
    rec = Recognizer(FakeBackend("skeleton"), pose, LiveConfig(window_s=0.12, inference_fps=None,
                                                                read_ahead=read_ahead))
    overlapped = []
    source = VideoFileSource(video)
    try:
        run_replay(source, rec, rec.cfg, Outputs(),
                   on_frame=lambda i: overlapped.append(pose.wait_for(i + 2, 0.5 if i < 7 else 0.0)))
    finally:
        source.close()
        rec.close()
    assert overlapped[:7] == ([True] * 7 if read_ahead else [False] * 7)


def test_a_failure_on_the_read_ahead_thread_reaches_the_caller_with_the_files_whole(tmp_path):
    class Broken(FakePose):
        def __call__(self, image_rgb, timestamp_ms=None):
            if self.calls == 4:
                raise RuntimeError("pose failed on frame 4")
            return super().__call__(image_rgb, timestamp_ms)

    video = write_video(tmp_path / "v.mp4", [np.full((120, 160, 3), 60, np.uint8) for _ in range(10)])
    source = VideoFileSource(video)
    outputs = file_outputs(tmp_path / "o.mp4", tmp_path / "o.jsonl", None, 25.0, source.size, log_timings=False)
    rec = Recognizer(FakeBackend("skeleton"), Broken(), LiveConfig(window_s=0.12, inference_fps=None, read_ahead=3))
    with pytest.raises(RuntimeError, match="frame 4"):
        run_replay(source, rec, rec.cfg, outputs)
    source.close()
    rec.close()
    frames = [json.loads(line)["frame"] for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert frames == [0, 1, 2, 3]                  # every step before the failure, each line whole
    assert threading.active_count() < 10 and not any(t.name == "read-ahead" for t in threading.enumerate())


def test_step_grid_steps_on_a_fixed_grid_of_file_time():
    every = StepGrid(None)
    assert all(every.due(t) for t in (0.0, 40.0, 80.0, 80.0))
    grid = StepGrid(10.0)                        # 100 ms: frames at 40 ms give steps at 0, 120, 200, 320 ...
    assert [t for t in np.arange(0, 440, 40.0) if grid.due(t)] == [0.0, 120.0, 200.0, 320.0, 400.0]
    gap = StepGrid(10.0)                         # a gap of a second re-anchors the grid at the next frame
    assert [t for t in (0.0, 100.0, 1250.0, 1300.0, 1350.0) if gap.due(t)] == [0.0, 100.0, 1250.0, 1350.0]
