"""The pose model lookup (no network) and the pose stage on a real person (astronaut.png)."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from mgr.realtime import posemodel
from mgr.realtime.pose import PoseConfig, PoseEstimator, PoseStage, SubjectTracker
from mgr.train.layout import JOINT_INDEX

J = JOINT_INDEX


# ----------------------------------------------------------------------------- lookup order
def test_cli_path_wins_over_env(tmp_path, monkeypatch, pose_model):
    other = tmp_path / "other.task"
    other.write_bytes(b"x")
    monkeypatch.setenv("MGR_POSE_MODEL", str(pose_model))
    assert posemodel.resolve_pose_model(other) == other


def test_env_var_is_second(pose_model):
    assert posemodel.resolve_pose_model(None) == pose_model   # conftest sets MGR_POSE_MODEL


def test_missing_explicit_paths_name_their_origin(tmp_path, monkeypatch):
    with pytest.raises(posemodel.PoseModelError, match="--pose-model"):
        posemodel.resolve_pose_model(tmp_path / "nope.task")
    monkeypatch.setenv("MGR_POSE_MODEL", str(tmp_path / "nope.task"))
    with pytest.raises(posemodel.PoseModelError, match="MGR_POSE_MODEL"):
        posemodel.resolve_pose_model(None)


def test_cached_model_is_used_when_its_checksum_matches(tmp_path, monkeypatch):
    monkeypatch.delenv("MGR_POSE_MODEL")
    monkeypatch.setenv("MGR_HOME", str(tmp_path))
    cached = tmp_path / posemodel.CACHE_NAME
    cached.write_bytes(b"model bytes")
    sha = hashlib.sha256(b"model bytes").hexdigest()
    assert posemodel.resolve_pose_model(None, allow_download=False, sha256=sha) == cached


def test_offline_message_names_both_options(tmp_path, monkeypatch):
    monkeypatch.delenv("MGR_POSE_MODEL")
    monkeypatch.setenv("MGR_HOME", str(tmp_path))
    bad_url = (tmp_path / "absent.task").as_uri()     # a failing "download" without network
    with pytest.raises(posemodel.PoseModelError) as e:
        posemodel.resolve_pose_model(None, url=bad_url)
    assert "--pose-model" in str(e.value) and "MGR_POSE_MODEL" in str(e.value)
    assert not list(tmp_path.glob("*.part"))           # no half file left behind


def test_download_rejects_a_checksum_mismatch(tmp_path):
    src = tmp_path / "served.task"
    src.write_bytes(b"not the model")
    dest = tmp_path / "cache" / "pose.task"
    with pytest.raises(posemodel.PoseModelError, match="sha256"):
        posemodel.download_model(dest, src.as_uri(), sha256="0" * 64)
    assert not dest.exists()
    good = hashlib.sha256(b"not the model").hexdigest()
    assert posemodel.download_model(dest, src.as_uri(), sha256=good).read_bytes() == b"not the model"


def test_the_given_pose_model_loads_in_both_modes(pose_model):
    # Any pose landmarker .task given by MGR_POSE_MODEL will do (the official download, whose
    # sha256 the product pins, or an offline build), so the test checks that it loads, not a checksum.
    for mode in ("image", "video"):
        with PoseEstimator(PoseConfig(pose_model, mode=mode)) as est:
            assert est(np.full((96, 128, 3), 90, np.uint8), 0).shape[1:] == (33, 3)


# ----------------------------------------------------------------------------- subject tracker
def person(x0, y0, x1, y1):
    lm = np.zeros((33, 3), np.float32)
    lm[:, 0] = np.linspace(x0, x1, 33)
    lm[:, 1] = np.linspace(y0, y1, 33)
    lm[:, 2] = 1.0
    return lm


def test_tracker_takes_the_largest_then_stays_with_them():
    tracker = SubjectTracker()
    small, big = person(0.05, 0.1, 0.25, 0.5), person(0.5, 0.1, 0.9, 0.9)
    assert tracker(np.stack([small, big])) == 1
    # the followed person shrinks a little (leans back); someone slightly larger stays second
    bigger_other = person(0.0, 0.0, 0.45, 0.75)
    assert tracker(np.stack([bigger_other, person(0.52, 0.12, 0.88, 0.85)])) == 1
    assert tracker(np.zeros((0, 33, 3), np.float32)) is None
    tracker.reset()
    assert tracker(np.stack([small, bigger_other])) == 1


def test_tracker_switches_when_someone_much_larger_steps_in():
    tracker = SubjectTracker()
    assert tracker(np.stack([person(0.7, 0.1, 0.8, 0.3)])) == 0
    assert tracker(np.stack([person(0.7, 0.1, 0.8, 0.3), person(0.1, 0.0, 0.6, 1.0)])) == 1


# ----------------------------------------------------------------------------- real model
@pytest.fixture(scope="module")
def astronaut_people(pose_model, astronaut_bgr):
    rgb = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2RGB)
    with PoseEstimator(PoseConfig(pose_model, mode="image", num_poses=2)) as est:
        return est(rgb)


def test_real_model_finds_one_person_on_the_astronaut(astronaut_people):
    assert astronaut_people.shape == (1, 33, 3)
    nose = astronaut_people[0, 0]
    assert nose[0] == pytest.approx(0.43, abs=0.05) and nose[1] == pytest.approx(0.26, abs=0.05)


def test_real_model_through_the_stage_gives_a_plausible_body25(pose_model, astronaut_bgr):
    rgb = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2RGB)
    with PoseEstimator(PoseConfig(pose_model, mode="video")) as est:
        kp = PoseStage(est)(rgb, 0)
    h, w = rgb.shape[:2]
    valid = kp[:, 2] > 0
    assert valid[[J["Nose"], J["Neck"], J["RShoulder"], J["LShoulder"], J["REye"], J["LEye"]]].all()
    assert (kp[valid, 0] >= 0).all() and (kp[valid, 0] <= w).all()
    assert (kp[valid, 1] >= 0).all() and (kp[valid, 1] <= h).all()
    assert kp[J["Nose"], 1] < kp[J["Neck"], 1]                 # nose above the neck (y grows down)
    # facing the camera: the subject's right shoulder is on the image's left
    assert kp[J["RShoulder"], 0] < kp[J["Neck"], 0] < kp[J["LShoulder"], 0]
    assert kp[J["REye"], 0] < kp[J["LEye"], 0]


def test_video_mode_accepts_repeated_timestamps_and_reset(pose_model, astronaut_bgr):
    rgb = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2RGB)
    with PoseEstimator(PoseConfig(pose_model, mode="video")) as est:
        assert len(est(rgb, 40)) == 1
        assert len(est(rgb, 40)) == 1      # same timestamp twice: nudged forward, not an error
        est.reset()
        assert len(est(rgb, 0)) == 1       # a new video starts at 0 again


def test_no_person_in_a_blank_image(pose_model):
    with PoseEstimator(PoseConfig(pose_model, mode="image")) as est:
        assert PoseStage(est)(np.full((240, 320, 3), 90, np.uint8)) is None


def test_bad_pose_settings_name_the_choices(pose_model, tmp_path):
    with pytest.raises(ValueError, match="video, image"):
        PoseEstimator(PoseConfig(pose_model, mode="stream"))
    junk = tmp_path / "junk.task"
    junk.write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a usable MediaPipe"):
        PoseEstimator(PoseConfig(junk))


def test_size_ignores_legs_extrapolated_below_the_frame():
    seated = person(0.1, 0.2, 0.3, 0.6)
    seated[25:, 1] = 1.6                               # knees and feet "seen" far below the image
    near = person(0.5, 0.1, 0.9, 0.9)
    near[25:, 2] = 0.0
    assert SubjectTracker()(np.stack([seated, near])) == 1
