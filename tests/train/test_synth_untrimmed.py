"""`mgr synth --untrimmed`: synthetic videos in the official layout, read back by the official reader."""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from mgr.train import cli as train_cli
from mgr.train import synth
from mgr.train.checkdata import check_dataset
from mgr.train.classes import index_from_official_id
from mgr.train.data import scan_dataset
from mgr.train.layout import JOINT_INDEX as J
from mgr.train.split import cross_subject_split, load_protocol
from mgr.train.synth import (LABEL_COLUMNS, SynthConfig, UntrimmedConfig, class_motion, generate,
                             generate_untrimmed, plan_untrimmed, stream_pose)

SMALL = UntrimmedConfig(videos=3, seed=5, seconds=(8.0, 8.0))   # 3 x 200 frames: a few seconds to write


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return generate_untrimmed(tmp_path_factory.mktemp("untrimmed") / "data", SMALL, workers=1)


def rows(root: Path) -> list[dict]:
    with open(root / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_official_layout_files(small_set):
    with open(small_set / "labels.csv", newline="") as fh:
        assert next(csv.reader(fh)) == list(LABEL_COLUMNS) == [
            "video_id", "label_id", "start_time", "start_frame", "end_time", "end_frame", "class", "subject_id",
            "subject_gender", "subject_nationality", "win_or_lose"]
    labels = rows(small_set)
    assert labels and {r["video_id"] for r in labels} <= {"1", "2", "3"}
    for r in labels:
        assert 1 <= int(r["class"]) <= 32
        assert float(r["start_time"]) == pytest.approx(int(r["start_frame"]) / 25, abs=1e-4)
        assert float(r["end_time"]) == pytest.approx(int(r["end_frame"]) / 25, abs=1e-4)
    for vid in ("1", "2", "3"):
        cap = cv2.VideoCapture(str(small_set / "videos" / f"{vid}.mp4"))
        size = (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        assert size == (320, 180) and fps == 25 and n == 200
        names = sorted(p.name for p in (small_set / "skeleton" / vid).iterdir())
        assert names == [f"{vid}_{f:012d}_keypoints.json" for f in range(n)]     # every frame, none left over
    assert not list(small_set.rglob(".*"))                                    # no temporary files left behind
    assert "THIS IS SYNTHETIC DATA" in (small_set / "README.md").read_text()


def test_detector_noise_in_the_json(small_set):
    people = [len(json.loads(p.read_text())["people"]) for p in sorted((small_set / "skeleton" / "1").iterdir())]
    assert set(people) == {0, 1} and 0 < people.count(0) < 20      # a few empty frames, an empty list each


def test_scan_finds_exactly_the_intervals_written(small_set):
    idx = scan_dataset(small_set)
    labels = rows(small_set)
    assert idx.layout == "official" and not idx.problems and len(idx.clips) == len(labels)
    for clip, r in zip(idx.clips, labels):
        assert clip.clip_id == f"{r['video_id']}/{r['label_id']}"
        assert clip.label == index_from_official_id(r["class"])
        assert clip.frame_range == (int(r["start_frame"]), int(r["end_frame"]))
        assert clip.subject == int(r["subject_id"])
        assert clip.video == str(small_set / "videos" / f"{r['video_id']}.mp4")
        assert clip.source_size == (320, 180) and clip.fps == 25
    rep = check_dataset(str(small_set))
    assert not rep.problems and not rep.video_problems and not rep.corrupt_keypoints and rep.missing_keypoints == 0
    assert not rep.interval_problems


def test_protocol_splits_the_synthetic_subjects(small_set):
    proto = json.loads((small_set / "protocol.json").read_text())
    assert "synthetic" in proto["source"].lower()
    train, test = load_protocol(small_set / "protocol.json")
    subjects = {int(r["subject_id"]) for r in rows(small_set)}
    assert train and test and not train & test and train | test == subjects
    split = cross_subject_split(scan_dataset(small_set).clips, small_set / "protocol.json", val_fraction=0.0)
    assert len(split["train"]) + len(split["test"]) == len(rows(small_set))


def test_plan_of_forty_videos():
    cfg = UntrimmedConfig(videos=40)
    plans = plan_untrimmed(cfg)
    assert plans == plan_untrimmed(cfg) and plans != plan_untrimmed(UntrimmedConfig(videos=40, seed=1))
    gestures = [g for p in plans for g in p.gestures]
    assert {g.label for g in gestures} == set(range(32))                     # classes cycle over the set
    secs = np.array([(g.end - g.start + 1) / 25 for g in gestures])
    assert secs.min() >= 0.8 and secs.max() <= 3.5 and 1.4 <= np.median(secs) <= 1.8
    for p in plans:
        assert 25 * 25 <= p.frames <= 45 * 25
        bounds = [-1] + [x for g in p.gestures for x in (g.start, g.end)] + [p.frames]
        idle = np.diff(bounds)[::2] - 1                                       # frames before, between, after
        assert idle.min() >= 25 and idle[:-1].max() <= 3 * 25 + 1
    per_subject = np.bincount([p.subject for p in plans])[1:]
    assert len(per_subject) == 10 and per_subject.min() >= 2                # subjects with several videos each


def test_gestures_start_and_end_at_rest_and_idle_has_no_class_motion():
    cfg = UntrimmedConfig(videos=6, seed=2)
    for plan in plan_untrimmed(cfg):
        kp = stream_pose(plan, cfg, np.random.default_rng(0))
        rest = {s: kp[0, J[f"{s}Wrist"], :2] for s in "LR"}      # every video starts idle
        moved = {s: np.linalg.norm(kp[:, J[f"{s}Wrist"], :2] - rest[s], axis=1) for s in "LR"}
        in_gesture = np.zeros(plan.frames, bool)
        for g in plan.gestures:
            in_gesture[g.start:g.end + 1] = True
            hands = class_motion(g.label)[0]
            mid = slice(g.start + (g.end - g.start) // 3, g.end - (g.end - g.start) // 3)
            for s in "LR":
                assert moved[s][g.start] < 1e-3 and moved[s][g.end] < 1e-3      # leaves rest, comes back
                if s in hands:
                    assert moved[s][mid].min() > 5                           # at the target in between
                else:
                    assert moved[s][g.start:g.end + 1].max() < 1e-3
        for s in "LR":
            assert moved[s][~in_gesture].max() <= 4.01                       # idle: a fidget at most
        neck_y = kp[~in_gesture, J["Neck"], 1]
        assert 1.0 < np.ptp(neck_y) < 6.0                                    # breathing, a pixel or two


def test_breathing_is_slow(tmp_path):
    cfg = UntrimmedConfig(videos=1, seconds=(40.0, 40.0))
    plan = plan_untrimmed(cfg)[0]
    kp = synth.idle_stream(synth.rest_pose(np.random.default_rng(0)), plan.frames, cfg.fps, np.random.default_rng(3))
    y = kp[:, J["Neck"], 1] - kp[:, J["Neck"], 1].mean()
    freqs = np.fft.rfftfreq(len(y), 1 / cfg.fps)
    assert 0.15 <= freqs[np.argmax(np.abs(np.fft.rfft(y)))] <= 0.35
    assert np.abs(kp[:, J["LWrist"], :2] - kp[0, J["LWrist"], :2]).max() == 0   # the hands rest


def test_workers_do_not_change_the_files(tmp_path):
    cfg = UntrimmedConfig(videos=2, seed=4, seconds=(2.0, 2.0), gap_seconds=(0.4, 0.6))
    one = generate_untrimmed(tmp_path / "one", cfg, workers=1)
    two = generate_untrimmed(tmp_path / "two", cfg, workers=2)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len(files) > 100 and Path("videos/2.mp4") in files
    assert [(two / f).read_bytes() for f in files] == [(one / f).read_bytes() for f in files]


def test_trimmed_output_is_unchanged(tmp_path):
    """The keypoints of a trimmed set, byte for byte as before the untrimmed generator shared its code."""
    out = generate(tmp_path / "t", SynthConfig(clips=40, seed=3, max_frames=8))
    h = hashlib.sha256()
    for p in sorted(out.rglob("*_keypoints.json"), key=lambda p: p.relative_to(out).as_posix()):
        h.update(p.relative_to(out).as_posix().encode() + b"\0" + p.read_bytes())
    assert h.hexdigest() == "28fa671ccb85a1b93905f514cec430de216cd0ac625e5343607e11271372f9b8"


def test_bad_config_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match="gap_seconds"):
        UntrimmedConfig(gap_seconds=(3.0, 1.0))
    with pytest.raises(ValueError, match="too short for a gesture"):
        generate_untrimmed(tmp_path / "x", UntrimmedConfig(videos=2, seconds=(2.0, 2.0)))
    assert not (tmp_path / "x").exists()


def test_cli_synth_untrimmed_then_check_data(tmp_path, monkeypatch):
    real, seen = synth.generate_untrimmed, []

    def short(out, cfg, progress=None):                 # the command's config, with 6-second videos
        seen.append(cfg)
        return real(out, replace(cfg, seconds=(6.0, 6.0), gap_seconds=(1.0, 1.5)), progress, workers=1)
    monkeypatch.setattr(synth, "generate_untrimmed", short)
    app = typer.Typer()
    train_cli.register(app, typer.Typer())
    out = tmp_path / "u"
    r = CliRunner().invoke(app, ["synth", str(out), "--untrimmed", "--videos", "2", "--seed", "7", "--clips", "5"])
    assert r.exit_code == 0, r.output
    assert seen == [UntrimmedConfig(videos=2, seed=7)]
    assert "ignored for the untrimmed set: --clips" in r.output and "synthetic" in r.output
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["1.mp4", "2.mp4"]
    r = CliRunner().invoke(app, ["check-data", str(out)])
    assert r.exit_code == 0, r.output
    assert "layout official" in r.output and "background per video" in " ".join(r.output.split())


def test_rewrites_its_own_set_but_never_a_real_dataset(tmp_path, imigue_sample):
    import shutil
    cfg = UntrimmedConfig(videos=1, seconds=(6.0, 6.0), gap_seconds=(1.0, 1.5))
    out = generate_untrimmed(tmp_path / "u", replace(cfg, seconds=(7.0, 7.0)), workers=1)
    generate_untrimmed(out, cfg, workers=1)                                   # a shorter video 1 this time
    assert len(list((out / "skeleton" / "1").iterdir())) == 150 and rows(out)
    real = tmp_path / "real"
    shutil.copytree(imigue_sample, real)
    before = sorted(p.relative_to(real) for p in real.rglob("*"))
    with pytest.raises(ValueError, match=r"real/labels.csv: exists .* refusing"):
        generate_untrimmed(real, cfg, workers=1)
    assert sorted(p.relative_to(real) for p in real.rglob("*")) == before
