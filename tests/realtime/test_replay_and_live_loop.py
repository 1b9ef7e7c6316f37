"""End to end: `mgr replay` on a generated video with the real pose model and real .pt artifacts,
live headless on a fake camera, Ctrl-C handling, and the error paths of the commands."""
from __future__ import annotations

import json
import os
import signal
import time

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from mgr.engines.backends import load_backend
from mgr.realtime.cli import app
from mgr.realtime.outputs import JSONL_KEYS, JsonlSink, VideoSink
from mgr.realtime.pipeline import LiveConfig, Recognizer
from mgr.realtime.pose import PoseConfig, PoseEstimator, PoseStage
from mgr.realtime.runner import Outputs, run_live, run_replay
from mgr.realtime.sources import EmulatedCamera, LiveSource, VideoFileSource
from rt_helpers import FakeBackend, FakePose, pan_zoom_frames, write_video

runner = CliRunner()


def text(res) -> str:
    """Command output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def video_info(path):
    cap = cv2.VideoCapture(str(path))
    info = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return info


def replay(tmp_path, video, model, name, *extra):
    out, jsonl = tmp_path / f"{name}.mp4", tmp_path / f"{name}.jsonl"
    res = runner.invoke(app, ["replay", str(video), "--model", str(model), "--out", str(out),
                              "--jsonl", str(jsonl), *extra])
    assert res.exit_code == 0, res.output
    return out, jsonl, res.output


def test_replay_real_video_skeleton_model_is_complete_and_deterministic(tmp_path, astronaut_video, checkpoint_factory):
    model = checkpoint_factory("skeleton")
    out, jsonl, output = replay(tmp_path, astronaut_video, model, "a")
    assert video_info(out) == (24, pytest.approx(25.0))            # same frame count and fps as the input
    rows = read_jsonl(jsonl)
    assert len(rows) == 24 and [r["frame"] for r in rows] == list(range(24))
    for r in rows:
        assert list(r) == list(JSONL_KEYS)
        assert r["status"] in ("ok", "uncertain", "warming up", "no person")
        assert all(set(t) == {"name", "p"} for t in r["top5"])
    assert sum(r["person"] for r in rows) >= 20                     # the real pose model finds her
    assert {r["status"] for r in rows[12:]} <= {"ok", "uncertain"}  # window 0.4 s (metadata) = 10 frames
    assert len(rows[-1]["top5"]) == 5
    _, jsonl2, _ = replay(tmp_path, astronaut_video, model, "b")
    assert jsonl2.read_text() == jsonl.read_text()                   # same input and artifact: same JSONL


def test_replay_with_the_onnx_export_matches_the_checkpoint(tmp_path, astronaut_bgr, checkpoint_factory):
    """The loop takes any artifact: the ONNX graph set of a fusion checkpoint gives the same
    labels and, within float tolerance, the same probabilities as the checkpoint itself."""
    from mgr.engines.export import export_checkpoint
    ckpt = checkpoint_factory("fusion")
    (tmp_path / "onnx").mkdir()
    onnx_set = export_checkpoint(ckpt, tmp_path / "onnx" / "model.onnx")
    video = write_video(tmp_path / "short.mp4", pan_zoom_frames(astronaut_bgr, 10), fps=10)
    _, a, _ = replay(tmp_path, video, ckpt, "pt", "--window", "0.6")
    _, b, output = replay(tmp_path, video, onnx_set.clip, "onnx", "--window", "0.6")
    rows_a, rows_b = read_jsonl(a), read_jsonl(b)
    assert len(rows_a) == len(rows_b) == 10 and sum(r["status"] in ("ok", "uncertain") for r in rows_b) >= 3
    for ra, rb in zip(rows_a, rows_b):
        assert ra["status"] == rb["status"] and ra["person"] == rb["person"]
        assert [t["name"] for t in ra["top5"]][:1] == [t["name"] for t in rb["top5"]][:1]
        pa = {t["name"]: t["p"] for t in ra["top5"]}
        for t in rb["top5"]:
            if t["name"] in pa:
                assert abs(t["p"] - pa[t["name"]]) < 1e-3


def test_replay_fusion_model_with_timings_and_inference_rate(tmp_path, astronaut_bgr, checkpoint_factory):
    video = write_video(tmp_path / "short.mp4", pan_zoom_frames(astronaut_bgr, 10), fps=10)
    out, jsonl, _ = replay(tmp_path, video, checkpoint_factory("fusion"), "f", "--timings", "--inference-fps", "5",
                           "--window", "0.6")
    assert video_info(out)[0] == 10
    rows = read_jsonl(jsonl)
    assert [r["frame"] for r in rows] == [0, 2, 4, 6, 8]            # 5 steps/s of video time
    assert set(rows[0]["ms"]) == {"capture", "pose", "encode", "head", "events", "draw"}
    assert rows[-1]["status"] in ("ok", "uncertain") and rows[-1]["person"]


def test_replay_of_a_video_without_a_person_says_no_person(tmp_path, checkpoint_factory):
    frames = [np.full((240, 320, 3), 60 + i, np.uint8) for i in range(6)]
    _, jsonl, _ = replay(tmp_path, write_video(tmp_path / "empty.mp4", frames), checkpoint_factory("skeleton"), "e")
    rows = read_jsonl(jsonl)
    assert len(rows) == 6 and all(r["status"] == "no person" and not r["person"] and r["top5"] == [] for r in rows)


@pytest.mark.parametrize("case", ["missing", "corrupt"])
def test_replay_bad_video_is_one_clear_error(tmp_path, case, checkpoint_factory):
    path = tmp_path / "v.mp4"
    if case == "corrupt":
        path.write_bytes(b"\x00garbage" * 200)
    res = runner.invoke(app, ["replay", str(path), "--model", str(checkpoint_factory("skeleton"))])
    assert res.exit_code == 2
    assert ("not found" if case == "missing" else "decod") in text(res) and "Traceback" not in text(res)


def test_without_a_model_the_command_says_how_to_make_one(tmp_path, astronaut_video, monkeypatch):
    monkeypatch.setenv("MGR_HOME", str(tmp_path / "empty-home"))      # no model recorded by any other test
    res = runner.invoke(app, ["replay", str(astronaut_video)])
    assert res.exit_code == 2 and "mgr demo" in text(res) and "mgr train" in text(res)


def test_without_model_flag_the_newest_recorded_model_is_used(tmp_path, astronaut_video, checkpoint_factory):
    from mgr.train.registry import record_model
    record_model(checkpoint_factory("skeleton"), "train")
    res = runner.invoke(app, ["replay", str(astronaut_video), "--jsonl", str(tmp_path / "p.jsonl")])
    assert res.exit_code == 0, res.output
    assert "newest model" in text(res) and "skeleton.pt" in res.output.replace("\n", "")


def test_live_camera_that_does_not_open(tmp_path):
    res = runner.invoke(app, ["live", "--camera", "97", "--headless", "--reconnects", "0"])
    assert res.exit_code == 2 and "camera 97" in text(res) and "--video" in text(res)


def test_live_needs_exactly_one_source():
    res = runner.invoke(app, ["live", "--headless"])
    assert res.exit_code == 2 and "--camera" in text(res)


# ----------------------------------------------------------------------------- live loop
def test_live_headless_on_a_fake_camera_with_a_disconnect(tmp_path):
    frames = [np.full((480, 640, 3), i * 4, np.uint8) for i in range(60)]
    cameras = [EmulatedCamera(frames, fps=30, fail_after=45)]      # unplugged after 1.5 s, never back
    source = LiveSource(lambda: cameras.pop() if cameras else None, "fake camera",
                        max_reconnects=1, reconnect_delay_s=0.01)
    backend = FakeBackend()
    outputs = Outputs(VideoSink(tmp_path / "live.mp4", 30.0), JsonlSink(tmp_path / "live.jsonl"))
    cfg = LiveConfig(window_s=0.3, inference_fps=10.0)
    try:
        summary = run_live(source, Recognizer(backend, FakePose(), cfg), cfg, outputs, max_seconds=20)
    finally:
        source.close()
    assert "disconnected" in summary.end_reason and not summary.interrupted
    assert summary.frames + summary.dropped == 45 and summary.steps >= 2
    assert summary.steps <= summary.frames                      # display is not tied to inference
    # one frame encoded per step; a step still running when the camera died is kept and logged
    assert summary.encoded_frames == backend.encoded == summary.steps
    rows = read_jsonl(tmp_path / "live.jsonl")
    assert len(rows) == summary.steps and all("ms" in r for r in rows)
    assert video_info(tmp_path / "live.mp4")[0] == summary.frames
    assert summary.latency_ms["p95"] >= summary.latency_ms["p50"] > 0


def test_live_headless_real_pose_on_fake_camera_finds_the_person(pose_model, astronaut_bgr, checkpoint_factory):
    frames = pan_zoom_frames(astronaut_bgr, 30)
    source = LiveSource(lambda: EmulatedCamera(frames, fps=30), "fake camera", max_reconnects=0)
    backend = load_backend(checkpoint_factory("skeleton"))
    cfg = LiveConfig(window_s=0.4, inference_fps=10.0)
    with PoseEstimator(PoseConfig(pose_model, mode="video")) as est:
        try:
            summary = run_live(source, Recognizer(backend, PoseStage(est), cfg), cfg, Outputs(), max_seconds=2.5)
        finally:
            source.close()
    assert summary.steps >= 3 and summary.steps_with_person >= summary.steps - 1
    assert summary.end_reason.startswith("ran the requested")


class InterruptingSource:
    """A file source whose user presses Ctrl-C after ``n`` frames."""

    def __init__(self, path, n):
        self.inner, self.n = VideoFileSource(path), n
        self.fps, self.dropped, self.end_reason, self.name = self.inner.fps, 0, None, "file"

    def read(self):
        f = self.inner.read()
        if f is not None and f.index >= self.n:
            raise KeyboardInterrupt
        return f


def test_ctrl_c_finalises_the_video_and_the_jsonl(tmp_path, astronaut_video):
    source = InterruptingSource(astronaut_video, 7)
    outputs = Outputs(VideoSink(tmp_path / "cut.mp4", source.fps, (640, 480)), JsonlSink(tmp_path / "cut.jsonl"), False)
    cfg = LiveConfig(window_s=0.2, inference_fps=None)
    summary = run_replay(source, Recognizer(FakeBackend(), FakePose(), cfg), cfg, outputs)
    assert summary.interrupted and summary.frames == 7
    assert video_info(tmp_path / "cut.mp4")[0] == 7                 # a playable file with every drawn frame
    text = (tmp_path / "cut.jsonl").read_text()
    assert text.endswith("\n") and len(read_jsonl(tmp_path / "cut.jsonl")) == 7


class CtrlCWhileFinalising(VideoSink):
    """The user presses Ctrl-C (again) just as the mp4 is being finalised."""

    def close(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)                      # the handler runs here, between bytecodes
        super().close()


def test_ctrl_c_while_finalising_still_gives_a_whole_mp4(tmp_path, astronaut_video):
    source = VideoFileSource(astronaut_video)
    outputs = Outputs(CtrlCWhileFinalising(tmp_path / "end.mp4", source.fps, (640, 480)),
                      JsonlSink(tmp_path / "end.jsonl"), False)
    cfg = LiveConfig(window_s=0.2, inference_fps=None)
    summary = run_replay(source, Recognizer(FakeBackend(), FakePose(), cfg), cfg, outputs)
    assert summary.interrupted and summary.end_reason == "interrupted"
    assert video_info(tmp_path / "end.mp4")[0] == summary.frames > 0     # renamed, playable, every frame
    assert not list(tmp_path.glob(".*partial*"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again afterwards


def test_live_cli_headless_on_a_video_file(tmp_path, astronaut_video, checkpoint_factory):
    jsonl = tmp_path / "live.jsonl"
    res = runner.invoke(app, ["live", "--video", str(astronaut_video), "--headless", "--model",
                              str(checkpoint_factory("skeleton")), "--jsonl", str(jsonl), "--save",
                              str(tmp_path / "live.mp4"), "--inference-fps", "8", "--duration", "5"])
    assert res.exit_code == 0, res.output
    rows = read_jsonl(jsonl)
    assert rows and all(set(r["ms"]) == {"capture", "pose", "encode", "head", "events", "draw"} for r in rows)
    assert "dropped frames" in text(res) and "end of video" in text(res)
    assert video_info(tmp_path / "live.mp4")[0] == 24


def test_bench_live_writes_all_three_runs(tmp_path, astronaut_bgr, checkpoint_factory):
    video = write_video(tmp_path / "b.mp4", pan_zoom_frames(astronaut_bgr, 8), fps=10)
    out = tmp_path / "bench.json"
    res = runner.invoke(app, ["bench", "live", str(video), "--model", str(checkpoint_factory("fusion")),
                              "--seconds", "1", "--window", "0.3", "--json", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert {"replay", "replay_cached_serial", "replay_naive_serial", "live", "caching_speedup"} <= set(report)
    cached, naive = report["replay_cached_serial"], report["replay_naive_serial"]
    assert report["replay"]["frames"] == cached["frames"] == naive["frames"] == 8
    assert cached["steps_with_person"] >= 6
    assert naive["encoded_frames"] > cached["encoded_frames"] == 8     # naive re-encodes every window frame
    assert report["live"]["frames"] > 0 and "p95" in report["live"]["stage_ms"]["pose"]
    # 5th run: every network output on; the /ws client got every step, OSC its messages
    outs = report["replay_outputs"]["outputs"]
    assert report["replay_outputs"]["frames"] == 8 and outs["ws_records"] == 8 and outs["osc_received"] >= 8
    assert set(outs["added_ms_per_step_by_output"]) == {"lsl", "osc", "serve"} and outs["added_ms_per_step"]["p50"] > 0
    assert report["replay_outputs"]["sinks"]["serve"] == {"sent": 8, "dropped": 0}
    # the floor (decode + pose alone) in the same run, and every run as a ratio to it
    floor = report["floor"]
    assert floor["frames"] == 8 and floor["fps"] > 0 and floor["stage_ms"]["pose"]["p50"] > 0
    assert report["ratio_to_floor"]["replay"]["fps"] == pytest.approx(report["replay"]["display_fps"] / floor["fps"])
    assert set(report["ratio_to_floor"]) == {"replay", "replay_files", "replay_files_no_read_ahead",
                                             "replay_cached_serial", "replay_naive_serial", "live", "replay_outputs"}
    # mgr replay --out --jsonl as shipped, with and without read-ahead: same frames, same steps
    for name in ("replay_files", "replay_files_no_read_ahead"):
        assert report[name]["frames"] == report[name]["steps"] == 8
        assert report[name]["steps_with_person"] == cached["steps_with_person"]


def test_live_cli_on_an_image_folder_with_one_unreadable_image(tmp_path, astronaut_bgr, checkpoint_factory):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, f in enumerate(pan_zoom_frames(astronaut_bgr, 6, (320, 240))):
        cv2.imwrite(str(folder / f"{i}.jpg"), f)
    (folder / "3b.jpg").write_bytes(b"not a jpeg")
    jsonl = tmp_path / "imgs.jsonl"
    res = runner.invoke(app, ["live", "--images", str(folder), "--headless", "--model",
                              str(checkpoint_factory("skeleton")), "--jsonl", str(jsonl), "--inference-fps", "30"])
    assert res.exit_code == 0, res.output
    assert "6 images (1 unreadable)" in text(res)
    assert 1 <= len(read_jsonl(jsonl)) <= 6
