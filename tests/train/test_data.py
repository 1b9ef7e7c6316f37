import json

import cv2
from dataclasses import replace

import numpy as np
import pytest

from mgr.train.checkdata import check_dataset
from mgr.train.classes import class_names, index_from_official_id
from mgr.train.data import (ClipDataset, DatasetConfig, DatasetError, detect_layout, fit_keypoint_stats,
                            read_clip_keypoints, scan_dataset)
from mgr.train.keypoints_io import KeypointFileError, read_openpose_json, write_openpose_json
from mgr.train.preprocess import DEFAULT, KeypointStats


def _img(path, w=320, h=180, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))


def _kp(center=(100.0, 50.0), conf=0.9):
    kp = np.zeros((25, 3), np.float32)
    kp[:8] = (*center, conf)
    return kp


def test_classes_official_ids_and_raw_99():
    names = class_names()
    assert len(names) == 32 and names[31].startswith("Illustrative body language")
    assert index_from_official_id("99") == 31 and index_from_official_id(1) == 0
    with pytest.raises(ValueError, match="1..32"):
        index_from_official_id(33)


def test_real_imigue_sample_official_layout(imigue_sample):
    idx = scan_dataset(imigue_sample)
    assert idx.layout == "official" and len(idx.clips) == 3
    assert sorted(c.label for c in idx.clips) == [3, 30, 31]      # classes 4, 31, 32 (coded 99)
    assert [c.num_frames for c in idx.clips] == [90, 34, 31]
    assert all(c.subject == 22 for c in idx.clips)
    stats = fit_keypoint_stats(idx.clips, DEFAULT)
    ds = ClipDataset(idx.clips, DatasetConfig(False, True, False, replace(DEFAULT, keypoint_stats=stats)))
    for i in range(3):
        x = ds[i]["skeleton"].numpy()
        assert x.shape == (3, 4, 25) and np.isfinite(x).all()
        conf = x[2]
        missing = conf == 0
        assert missing.any() and not missing.all()       # OpenPose misses legs in interview shots
        assert (x[0][missing] == 0).all() and (x[1][missing] == 0).all()
        assert (conf[~missing] >= 0.1).all()
    # raw keypoints land inside the 320x176 reference frame
    kp = read_clip_keypoints(idx.clips[0], [0, 10, 20, 30], DEFAULT)
    valid = kp[..., 2] > 0
    assert (kp[..., 0][valid] <= 320).all() and (kp[..., 1][valid] <= 176).all()


def test_rgb_needs_frames_in_official_layout_without_video(imigue_sample):
    idx = scan_dataset(imigue_sample)
    with pytest.raises(DatasetError, match="--modality skeleton"):
        ClipDataset(idx.clips, DatasetConfig(True, True, False, DEFAULT))


def test_synthetic_image_level_layout(synth_data):
    idx = scan_dataset(synth_data)
    assert idx.layout == "image-level" and len(idx.clips) == 96 and not idx.problems
    assert set(idx.class_counts()) == set(range(32))
    assert "SYNTHETIC" in (synth_data / "README.md").read_text()
    ds = ClipDataset(idx.clips[:2], DatasetConfig(True, True, True, replace(DEFAULT, keypoint_stats=fit_keypoint_stats(idx.clips, DEFAULT))))
    item = ds[0]
    assert item["rgb"].shape == (4, 3, 224, 224) and item["skeleton"].shape == (3, 4, 25)


def test_numeric_class_folder_sort_and_clip_folders(tmp_path):
    for cls in ("2", "10"):
        for f in (1, 2, 11):
            _img(tmp_path / cls / "clipA" / f"{f}.jpg")
        write_openpose_json(tmp_path / cls / "clipA" / "1_keypoints.json", [_kp()])
    for f in (1, 2, 10):
        _img(tmp_path / "3" / "clipB" / f"frame_{f}.jpg")          # ffmpeg-style names
    idx = scan_dataset(tmp_path)
    assert idx.layout == "clip-folders"
    assert [c.label for c in idx.clips] == [1, 2, 9]   # "2", "3" before "10": numeric, not text, order
    assert [p.split("/")[-1] for p in idx.clips[0].frames] == ["1.jpg", "2.jpg", "11.jpg"]
    assert [p.split("/")[-1] for p in idx.clips[1].frames] == ["frame_1.jpg", "frame_2.jpg", "frame_10.jpg"]


def test_parallel_keypoint_tree(tmp_path):
    _img(tmp_path / "data" / "5" / "7.1.jpg", 640, 360)
    write_openpose_json(tmp_path / "kp" / "5" / "7.1_keypoints.json", [_kp((320.0, 180.0))])
    idx = scan_dataset(tmp_path / "data", tmp_path / "kp")
    kp = read_clip_keypoints(idx.clips[0], [0], DEFAULT)
    np.testing.assert_allclose(kp[0, 0], (160, 88, 0.9), rtol=1e-5)  # rescaled from 640x360


def test_missing_folder_and_unknown_layout(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        scan_dataset(tmp_path / "nope")
    (tmp_path / "misc").mkdir()
    with pytest.raises(DatasetError, match="no supported layout"):
        detect_layout(tmp_path)


def test_openpose_json_people_selection_and_corruption(tmp_path):
    weak, strong = _kp(conf=0.3), _kp((1, 2), conf=0.95)
    p = write_openpose_json(tmp_path / "a_keypoints.json", [weak, strong])
    kp, n = read_openpose_json(p)
    assert n == 2 and kp[0, 0] == 1                       # the most confident person
    p0 = write_openpose_json(tmp_path / "b_keypoints.json", [])
    kp, n = read_openpose_json(p0)
    assert n == 0 and not kp.any()                         # nobody: all missing, no error
    (tmp_path / "c_keypoints.json").write_text('{"people": [{"pose_keypoints_2d": [1, 2')
    with pytest.raises(KeypointFileError, match="c_keypoints.json: invalid JSON"):
        read_openpose_json(tmp_path / "c_keypoints.json")
    (tmp_path / "d_keypoints.json").write_text("")
    with pytest.raises(KeypointFileError, match="d_keypoints.json: empty file"):
        read_openpose_json(tmp_path / "d_keypoints.json")
    (tmp_path / "e_keypoints.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [0.0] * 54}]}))
    with pytest.raises(KeypointFileError, match="expected 75"):
        read_openpose_json(tmp_path / "e_keypoints.json")


def test_broken_dataset_gives_clear_errors_and_check_data_finishes(tmp_path):
    root = tmp_path / "d"
    _img(root / "1" / "1.1.jpg")                                       # 1-frame clip
    write_openpose_json(root / "1" / "1.1_keypoints.json", [np.full((25, 3), np.nan, np.float32)])  # NaN coords
    _img(root / "2" / "2.1.jpg")
    (root / "2" / "2.1_keypoints.json").write_text("{trunc")            # truncated JSON
    (root / "3").mkdir()                                                # empty class
    _img(root / "4" / "4.1.jpg")
    (root / "4" / "4.2.jpg").write_bytes(b"not an image")               # unreadable image
    rep = check_dataset(str(root))
    assert any("empty class folder" in p for p in rep.problems)
    assert len(rep.unreadable_images) == 1 and "4.2.jpg" in rep.unreadable_images[0]
    assert len(rep.corrupt_keypoints) == 1 and "2.1_keypoints.json" in rep.corrupt_keypoints[0]
    idx = scan_dataset(root)
    stats = KeypointStats.identity()
    ds = ClipDataset(idx.clips, DatasetConfig(True, True, False, replace(DEFAULT, keypoint_stats=stats)))
    by_id = {c.clip_id: i for i, c in enumerate(idx.clips)}
    one = ds[by_id["1/1"]]                         # 1 frame repeated, NaN joints -> all missing
    assert one["rgb"].shape == (4, 3, 224, 224) and (one["skeleton"] == 0).all()
    assert (ds[by_id["2/2"]]["skeleton"] == 0).all()  # corrupt JSON -> missing, with a warning
    with pytest.raises(ValueError, match=r"4\.2\.jpg: cannot decode image.*check-data"):
        ds[by_id["4/4"]]


def test_frame_cache_returns_same_pixels(synth_data, tmp_path):
    idx = scan_dataset(synth_data)
    stats = KeypointStats.identity()
    plain = ClipDataset(idx.clips[:3], DatasetConfig(True, False, False, replace(DEFAULT, keypoint_stats=stats)))
    cached = ClipDataset(idx.clips[:3], DatasetConfig(True, False, False, replace(DEFAULT, keypoint_stats=stats), cache_dir=str(tmp_path / "c")))
    for i in range(3):
        a, b, c = plain[i]["rgb"], cached[i]["rgb"], cached[i]["rgb"]
        assert np.array_equal(a, b) and np.array_equal(b, c)
    assert len(list((tmp_path / "c").rglob("*.npy"))) > 0


BAD_VALUES = {
    "string": {"people": [{"pose_keypoints_2d": ["x"] + [0.0] * 74}]},
    "number": {"people": [{"pose_keypoints_2d": 7}]},
    "not_multiple_of_3": {"people": [{"pose_keypoints_2d": [0.5] * 74}]},
    "people_not_list": {"people": {"pose_keypoints_2d": [0.5] * 75}},
    "nested_list": {"people": [{"pose_keypoints_2d": [[0.5, 0.5, 0.5]] * 25}]},
    "huge_int": {"people": [{"pose_keypoints_2d": [10 ** 400] + [0.0] * 74}]},
}


@pytest.mark.parametrize("kind", sorted(BAD_VALUES))
def test_keypoint_json_with_bad_values_is_corrupt_not_a_crash(tmp_path, kind, caplog):
    root = tmp_path / "d"
    _img(root / "1" / "1.1.jpg")
    _img(root / "1" / "1.2.jpg")
    write_openpose_json(root / "1" / "1.1_keypoints.json", [_kp()])
    (root / "1" / "1.2_keypoints.json").write_text(json.dumps(BAD_VALUES[kind]))
    with pytest.raises(KeypointFileError, match=r"1\.2_keypoints\.json: .*(pose|people)"):
        read_openpose_json(root / "1" / "1.2_keypoints.json")
    rep = check_dataset(str(root))                                    # check-data counts it, no crash
    assert rep.frames_checked == 2 and len(rep.corrupt_keypoints) == 1
    assert "1.2_keypoints.json" in rep.corrupt_keypoints[0]
    idx = scan_dataset(root)
    kp = read_clip_keypoints(idx.clips[0], [0, 1], DEFAULT)        # training: warn, frame missing
    assert (kp[0, :8, 2] > 0).all() and not kp[1].any()
    assert any("1.2_keypoints.json" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


@pytest.mark.parametrize("video", ["short", "garbage"])
def test_check_data_reports_official_videos_that_cannot_hold_their_clips(imigue_sample, tmp_path, video):
    """The real sample's label rows against a video that is too short, or not a video at all."""
    import shutil
    from mgr.train.checkdata import check_dataset
    root = tmp_path / "imigue"
    shutil.copytree(imigue_sample, root)
    (root / "videos").mkdir()
    path = root / "videos" / "298.mp4"
    if video == "short":
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 36))
        for _ in range(20):
            w.write(np.zeros((36, 64, 3), np.uint8))
        w.release()
    else:
        path.write_bytes(b"not a video" * 100)
    rep = check_dataset(str(root))
    if video == "short":
        assert len(rep.video_problems) == 3 and all("the video has 20 (0..19)" in p for p in rep.video_problems)
    else:
        assert rep.video_problems == [f"{path}: cannot be opened as a video"]
