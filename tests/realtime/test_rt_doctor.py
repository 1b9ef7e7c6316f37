"""mgr doctor: each line OK or what to do; a missing pose model is a failure that says how to fix it."""
from typer.testing import CliRunner

from mgr.realtime.cli import app
from mgr.realtime.doctor import run_checks


def test_doctor_finds_the_pose_model_from_the_environment(monkeypatch, tmp_path, pose_model):
    monkeypatch.setenv("MGR_POSE_MODEL", str(pose_model))
    monkeypatch.setenv("MGR_HOME", str(tmp_path))
    checks = {c.name: c for c in run_checks(camera_indices=1)}
    assert checks["pose model"].ok and str(pose_model) in checks["pose model"].detail
    assert checks["torch"].ok and checks["onnxruntime"].ok and "CPUExecutionProvider" in checks["onnxruntime"].detail
    assert checks["opencv"].ok and "opencv-contrib-python" in checks["opencv"].detail
    assert checks["cache"].ok and str(tmp_path) in checks["cache"].detail


def test_doctor_without_pose_model_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("MGR_POSE_MODEL", str(tmp_path / "missing.task"))
    monkeypatch.setenv("MGR_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["doctor", "--cameras", "1"])
    assert result.exit_code == 1
    assert "FIX" in result.output and "MGR_POSE_MODEL" in result.output


def test_doctor_with_nothing_given_says_where_the_download_goes_and_the_offline_options(monkeypatch, tmp_path):
    monkeypatch.delenv("MGR_POSE_MODEL", raising=False)
    monkeypatch.setenv("MGR_HOME", str(tmp_path))
    checks = {c.name: c for c in run_checks(camera_indices=1)}
    pose = checks["pose model"]
    assert pose.ok is False and str(tmp_path) in pose.action
    assert "--pose-model" in pose.action and "MGR_POSE_MODEL" in pose.action
    assert not list(tmp_path.rglob("*.task"))           # doctor looks; it never downloads
    assert checks["tensorrt"].ok in (None, True)        # absent here, or present and importable
    assert "torch hub" in checks["ImageNet weights"].detail
