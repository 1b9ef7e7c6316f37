"""`mgr demo` end to end on a tiny configuration: every step's output, reuse on a second
run, and the offline path (no pose model: the other steps still run, and it says how to
supply one). The full-size demo is measured by hand (README)."""
from __future__ import annotations

import json

import cv2
import pytest
from typer.testing import CliRunner

from mgr.realtime import posemodel
from mgr.realtime.cli import app
from mgr.realtime.demo import DemoConfig, run_demo_cli
from mgr.train.registry import latest_model

TINY = dict(clips=64, epochs=1, video_seconds=1.0, bench_seconds=0.2)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory, pose_model):
    out = tmp_path_factory.mktemp("demo") / "mgr-demo"
    mp = pytest.MonkeyPatch()
    mp.setenv("MGR_POSE_MODEL", str(pose_model))
    mp.setenv("MGR_HOME", str(out.parent / "home"))
    try:
        results = run_demo_cli(DemoConfig(out=out, **TINY))
        newest = latest_model()
    finally:
        mp.undo()
    return out, results, newest


def test_demo_makes_every_output_and_records_the_onnx_model(demo_dir):
    out, results, newest = demo_dir
    for rel in ("data/README.md", "run/best.pt", "run/split.json", "run/eval_test.json", "run/confusion_test.png",
                "onnx/model.onnx", "onnx/model.encoder.onnx", "onnx-int8/model.onnx", "bench.json", "input.mp4",
                "replay.mp4", "replay.jsonl", "replay.json", "report.html"):
        assert (out / rel).is_file(), rel
    assert 0.0 <= results["evaluate"]["top1"] <= 1.0 and results["evaluate"]["clips"] > 0
    runtimes = {(r["runtime"], r["precision"]) for r in results["bench"]["results"]}
    assert {("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")} <= runtimes
    cap = cv2.VideoCapture(str(out / "replay.mp4"))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    assert cap.read()[0] and frames == results["replay"]["frames"] == 15          # 1 s at 15 fps
    rows = [json.loads(x) for x in (out / "replay.jsonl").read_text().splitlines()]
    assert len(rows) == frames and sum(r["person"] for r in rows) >= frames - 2    # the real photo's person
    assert newest == out / "onnx" / "model.onnx"       # `mgr live` without --model takes the ONNX graph
    page = (out / "report.html").read_text()
    assert "Table 1" in page and "data:image/png;base64" in page and "run" in page   # curves and confusion inlined
    assert results["report"] == out / "report.html"


def test_second_run_reuses_every_step(demo_dir, monkeypatch, pose_model, tmp_path):
    out, first, _ = demo_dir
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    monkeypatch.setenv("MGR_POSE_MODEL", str(pose_model))
    monkeypatch.setenv("MGR_HOME", str(tmp_path / "home"))       # the demo records its model there
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--clips", "64", "--epochs", "1"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    for step in ("synthetic data", "training", "report", "replay"):
        assert f"reusing {step}" in text
    changed = [p for p, t in stamps.items() if p.exists() and p.stat().st_mtime_ns != t]
    assert changed == []                                  # nothing redone, nothing rewritten


def test_offline_without_a_pose_model_runs_the_rest_and_says_how_to_supply_one(demo_dir, tmp_path, monkeypatch):
    out, _, _ = demo_dir
    monkeypatch.delenv("MGR_POSE_MODEL", raising=False)
    monkeypatch.setenv("MGR_HOME", str(tmp_path / "home"))

    def offline(dest, *a, **k):
        raise posemodel.PoseModelError(posemodel._offline_message(dest, "no network"))

    monkeypatch.setattr(posemodel, "download_model", offline)
    (out / "replay.json").unlink()                        # the replay must be attempted again
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--clips", "64", "--epochs", "1"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "replay skipped" in text and "--pose-model PATH" in text and "MGR_POSE_MODEL" in text
    assert "test top-1" in text                           # the steps that need no pose model still ran


def test_unwritable_out_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MGR_HOME", str(tmp_path / "home"))
    blocker = tmp_path / "file"
    blocker.write_text("a file where the demo folder should be")
    res = CliRunner().invoke(app, ["demo", "--out", str(blocker / "demo")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert str(blocker) in res.output
