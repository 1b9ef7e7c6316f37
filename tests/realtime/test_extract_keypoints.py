"""`mgr extract-keypoints` on small image trees (layouts 1 and 2), a video, and the astronaut."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from mgr.realtime.cli import app
from mgr.realtime.extract import ExtractConfig, plan_extract, run_extract
from mgr.realtime.pose import PoseConfig
from mgr.train.keypoints_io import read_openpose_json
from mgr.train.layout import JOINT_INDEX
from rt_helpers import pan_zoom_frames, write_video

runner = CliRunner()


def text(res) -> str:
    return " ".join(res.output.split())


@pytest.fixture
def dataset(tmp_path, astronaut_bgr):
    root = tmp_path / "data"
    small = cv2.resize(astronaut_bgr, (320, 320))
    # layout 1: ROOT/<class>/<clip>.<frame>.jpg
    (root / "3").mkdir(parents=True)
    cv2.imwrite(str(root / "3" / "12.1.jpg"), small)
    cv2.imwrite(str(root / "3" / "12.2.jpg"), cv2.flip(small, 1))
    cv2.imwrite(str(root / "3" / "13.1.jpg"), np.full((180, 320, 3), 70, np.uint8))   # nobody there
    (root / "3" / "13.2.jpg").write_bytes(b"\xff\xd8 truncated jpeg")                  # unreadable
    # layout 2: ROOT/<class>/<clip>/<frame>.jpg
    (root / "5" / "77").mkdir(parents=True)
    cv2.imwrite(str(root / "5" / "77" / "1.jpg"), small)
    (root / "notes.txt").write_text("not an image")
    return root


def test_extract_mirrors_the_tree_reads_back_and_resumes(tmp_path, dataset):
    out = tmp_path / "kp"
    res = runner.invoke(app, ["extract-keypoints", str(dataset), "--out", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*_keypoints.json"))
    assert files == ["3/12.1_keypoints.json", "3/12.2_keypoints.json", "3/13.1_keypoints.json",
                     "5/77/1_keypoints.json"]
    kp, people = read_openpose_json(out / "3" / "12.1_keypoints.json")     # the training reader
    assert people == 1 and kp.shape == (25, 3)
    valid = kp[:, 2] > 0
    assert (kp[valid, :2] >= 0).all() and (kp[valid, 0] <= 320).all() and (kp[valid, 1] <= 320).all()
    assert kp[JOINT_INDEX["Nose"], 1] < kp[JOINT_INDEX["Neck"], 1]
    # a mirrored photo still shows someone facing the camera: right shoulder on the image's left
    flipped, _ = read_openpose_json(out / "3" / "12.2_keypoints.json")
    assert flipped[JOINT_INDEX["RShoulder"], 0] < flipped[JOINT_INDEX["LShoulder"], 0]
    empty, none = read_openpose_json(out / "3" / "13.1_keypoints.json")
    assert none == 0 and not empty.any()
    summary = text(res)
    assert "13.2.jpg" in summary and "4 frames" not in summary          # unreadable file named
    stamp = (out / "3" / "12.1_keypoints.json").stat().st_mtime_ns
    again = runner.invoke(app, ["extract-keypoints", str(dataset), "--out", str(out), "--workers", "1"])
    assert again.exit_code == 0 and "1 frames to do, 4 already done" in text(again)   # only the unreadable one
    assert (out / "3" / "12.1_keypoints.json").stat().st_mtime_ns == stamp   # skipped, not rewritten
    assert not list(out.rglob("*.tmp"))


def test_extract_summary_counts(tmp_path, dataset, pose_model):
    cfg = ExtractConfig(dataset, tmp_path / "kp", PoseConfig(pose_model), workers=1)
    plan = plan_extract(cfg)
    assert plan.total == 5 and plan.skipped == 0
    summary = run_extract(cfg, plan)
    assert summary.frames == 4 and len(summary.unreadable) == 1 and len(summary.no_person) == 1
    assert summary.unreadable[0].endswith("13.2.jpg") and summary.no_person[0].endswith("13.1.jpg")


def test_extract_with_a_process_pool_and_a_video(tmp_path, astronaut_bgr, pose_model):
    root = tmp_path / "data"
    (root / "clips").mkdir(parents=True)
    write_video(root / "clips" / "298.mp4", pan_zoom_frames(astronaut_bgr, 5, (320, 180)))
    cv2.imwrite(str(root / "astronaut.png"), astronaut_bgr)
    cfg = ExtractConfig(root, tmp_path / "kp", PoseConfig(pose_model), workers=2)
    done = []
    summary = run_extract(cfg, on_progress=done.append)
    assert summary.frames == 6 and not summary.unreadable and sum(done) == 6
    vid = tmp_path / "kp" / "298"                                          # official: OUT/<video id>/
    names = sorted(p.name for p in vid.glob("*_keypoints.json"))
    assert names == [f"298_{i:012d}_keypoints.json" for i in range(5)]    # as OpenPose names video frames
    assert (vid / ".complete").is_file()
    assert sum(read_openpose_json(vid / n)[1] for n in names) >= 4
    kp, people = read_openpose_json(tmp_path / "kp" / "astronaut_keypoints.json")
    nose = kp[JOINT_INDEX["Nose"]]
    assert people == 1 and nose[0] / 512 == pytest.approx(0.43, abs=0.05) and nose[1] / 512 == pytest.approx(0.26, abs=0.05)
    assert plan_extract(cfg).total == 0                                     # all done: resumable


def test_extract_video_keypoints_read_through_the_official_layout_reader(tmp_path, astronaut_bgr, pose_model):
    from mgr.train.data import scan_dataset
    root = tmp_path / "official"
    (root / "videos").mkdir(parents=True)
    write_video(root / "videos" / "298.mp4", pan_zoom_frames(astronaut_bgr, 6, (320, 180)))
    (root / "labels.csv").write_text("video_id,label_id,start_time,start_frame,end_time,end_frame,class,subject_id\n"
                                     "298,1,0,0,0.2,5,4,1\n")
    run_extract(ExtractConfig(root, tmp_path / "kp", PoseConfig(pose_model), workers=1))
    from mgr.train.data import read_clip_keypoints
    from mgr.train.preprocess import DEFAULT
    index = scan_dataset(root, tmp_path / "kp")
    assert len(index.clips) == 1
    clip = index.clips[0]
    paths = clip.keypoint_paths()
    assert len(paths) == 6 and all(Path(p).is_file() for p in paths), clip
    kp = read_clip_keypoints(clip, range(6), DEFAULT, source_size=(320, 180))
    assert (kp[:, 0, 2] > 0).sum() >= 5                                     # the nose, in most frames


def test_extract_errors(tmp_path):
    res = runner.invoke(app, ["extract-keypoints", str(tmp_path / "absent"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not found" in text(res)
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["extract-keypoints", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no images" in text(res)
