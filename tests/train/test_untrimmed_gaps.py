"""Background gaps of untrimmed videos (train/untrimmed.py) and check-data's report of them."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from mgr.train import cli as train_cli
from mgr.train.checkdata import check_dataset
from mgr.train.data import scan_dataset
from mgr.train.synth import UntrimmedConfig, generate_untrimmed
from mgr.train.untrimmed import (VideoLabels, background_gaps, background_seconds, frames_lacking_skeleton,
                                 group_videos)


def record(clip_id: str, a: int, b: int, template: str | None = None):
    """A duck-typed clip record: what the official scan gives, without importing torch's data module."""
    return SimpleNamespace(clip_id=clip_id, frame_range=(a, b), video=None, fps=25.0, subject=7, label=0,
                           keypoint_template=template)


def index(*clips, layout="official"):
    return SimpleNamespace(root="/data/x", layout=layout, clips=list(clips))


def video(*spans, n=100):
    clips = tuple(record(f"9/{i}", a, b) for i, (a, b) in enumerate(spans, 1))
    return VideoLabels("9", None, n, 25.0, 7, clips, (), labelled=tuple(spans))


def test_gaps_are_the_frames_no_interval_covers():
    v = video((10, 19), (40, 49), n=100)
    assert background_gaps(v) == [(0, 9), (20, 39), (50, 99)]
    assert background_seconds(v) == pytest.approx(80 / 25)
    assert background_gaps(v, margin_frames=5) == [(0, 4), (25, 34), (55, 99)]   # not shrunk at the video's ends
    assert background_gaps(video((0, 9), (10, 99), n=100)) == []
    assert background_gaps(video((10, 19), (25, 30), n=100), margin_frames=3) == [(0, 6), (34, 99)]   # 20..24 gone
    assert background_gaps(VideoLabels("9", None, None, 25.0, 7, (), ())) == []
    assert background_seconds(VideoLabels("9", None, None, 25.0, 7, (), ())) == 0


def test_overlapping_and_out_of_range_intervals_are_reported_not_kept(tmp_path):
    skel = tmp_path / "skeleton" / "9"
    skel.mkdir(parents=True)
    for f in range(60):                                   # no video: the skeleton files give the length
        (skel / f"9_{f:012d}_keypoints.json").write_text('{"people": []}')
    template = str(skel / "9_{frame:012d}_keypoints.json")
    clips = [record("9/1", 30, 39, template), record("9/2", 5, 14, template), record("9/3", 12, 22, template),
             record("9/4", 50, 70, template), record("9/5", 14, 14, template)]
    [v] = group_videos(index(*clips))
    assert v.num_frames == 60 and v.subject == 7 and v.fps == 25.0
    assert [c.clip_id for c in v.clips] == ["9/2", "9/1"]                       # start order
    assert len(v.problems) == 3
    assert "clip 9/3 (frames 12..22) overlaps clip 9/2 (frames 5..14)" in v.problems[0]
    assert "clip 9/5 (frames 14..14) overlaps clip 9/2" in v.problems[1]
    assert "clip 9/4 (frames 50..70) runs past the end of the video (60 frames, 0..59)" in v.problems[2]
    # left-out intervals still cover their frames: 15..22 and 50..59 are gesture, not background
    assert background_gaps(v) == [(0, 4), (23, 29), (40, 49)]


def test_group_videos_needs_the_official_layout():
    with pytest.raises(ValueError, match=r"/data/x: layout 'image-level'.*official layout"):
        group_videos(index(record("9/1", 0, 1), layout="image-level"))


def test_frames_lacking_skeleton_counts_missing_files(tmp_path):
    skel = tmp_path / "9"
    skel.mkdir()
    for f in (0, 1, 2, 5):
        (skel / f"9_{f:012d}_keypoints.json").write_text('{"people": []}')
    v = VideoLabels("9", None, 10, 25.0, None, (), (), keypoint_template=str(skel / "9_{frame:012d}_keypoints.json"))
    assert frames_lacking_skeleton(v, [(0, 3), (5, 6)]) == 2                     # frames 3 and 6
    assert frames_lacking_skeleton(v, []) == 0
    gone = VideoLabels("9", None, 10, 25.0, None, (), (), keypoint_template=str(tmp_path / "x" / "{frame}.json"))
    assert frames_lacking_skeleton(gone, [(0, 3)]) == 4


def test_real_label_file_overlaps(data_dir, tmp_path):
    """The official label file: 3,474 of its 18,498 intervals overlap an earlier one in their video."""
    shutil.copy(data_dir / "imigue_labels.csv", tmp_path / "labels.csv")
    videos = group_videos(scan_dataset(tmp_path))
    problems = [p for v in videos for p in v.problems]
    assert len(videos) == 359 and len(problems) == 3474 and all("overlaps clip" in p for p in problems)
    assert sum(len(v.clips) for v in videos) == 18498 - 3474
    assert all(v.num_frames is None and background_gaps(v) == [] for v in videos)   # no videos, no skeletons


def test_real_sample_length_from_skeleton_files(imigue_sample):
    """The sample ships skeletons for its three clips only: the gaps lack them all."""
    [v] = group_videos(scan_dataset(imigue_sample))
    assert v.video is None and v.num_frames == 4817 and len(v.clips) == 3 and not v.problems
    gaps = background_gaps(v)
    assert frames_lacking_skeleton(v, gaps) == sum(b - a + 1 for a, b in gaps) == 4817 - (90 + 34 + 31)


# ----------------------------------------------------------------------------- check-data on a synthetic set
@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    return generate_untrimmed(tmp_path_factory.mktemp("gaps") / "data",
                              UntrimmedConfig(videos=2, seed=11, seconds=(8.0, 8.0)), workers=1)


@pytest.fixture
def tiny(tiny_set, tmp_path) -> Path:
    shutil.copytree(tiny_set, tmp_path / "data")
    return tmp_path / "data"


def csv_rows(root: Path) -> list[dict]:
    with open(root / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_check_data_background_matches_the_csv(tiny):
    rep = check_dataset(str(tiny))
    assert [b.video_id for b in rep.background] == ["1", "2"] and not rep.interval_problems
    for b in rep.background:
        mine = [r for r in csv_rows(tiny) if r["video_id"] == b.video_id]
        labelled = sum(int(r["end_frame"]) - int(r["start_frame"]) + 1 for r in mine)
        assert b.num_frames == 200 and b.gap_frames == 200 - labelled
        assert b.background_s == pytest.approx((200 - labelled) / 25) and b.lacking_skeleton == 0
    assert rep.background_totals()["background_s"] == pytest.approx(sum(b.background_s for b in rep.background))


def test_check_data_names_the_video_whose_gaps_lack_skeletons(tiny):
    first_gesture = min(int(r["start_frame"]) for r in csv_rows(tiny) if r["video_id"] == "2")
    for f in range(3):                                    # frames 0..2 are idle: every video opens with a gap
        assert f < first_gesture
        (tiny / "skeleton" / "2" / f"2_{f:012d}_keypoints.json").unlink()
    rep = check_dataset(str(tiny))
    assert {b.video_id: b.lacking_skeleton for b in rep.background} == {"1": 0, "2": 3}
    assert rep.background_totals()["videos_lacking_skeleton"] == 1
    out = run_check_data(tiny)
    assert "gap frames without a skeleton in 1 videos" in out and "3 of" in out


def test_check_data_reports_overlapping_and_past_the_end_rows(tiny):
    r = csv_rows(tiny)[0]
    a, b = int(r["start_frame"]), int(r["end_frame"])
    with open(tiny / "labels.csv", "a", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow([r["video_id"], 90, 0, a + 1, 0, b + 5, r["class"], r["subject_id"], "F", "Synthetic", "Win"])
        w.writerow([r["video_id"], 91, 0, 190, 0, 230, r["class"], r["subject_id"], "F", "Synthetic", "Win"])
    rep = check_dataset(str(tiny))
    vid = r["video_id"]
    assert len(rep.interval_problems) == 2
    assert f"clip {vid}/90 (frames {a + 1}..{b + 5}) overlaps clip {vid}/{r['label_id']}" in rep.interval_problems[0]
    assert f"clip {vid}/91 (frames 190..230) runs past the end of the video (200 frames" in rep.interval_problems[1]
    out = run_check_data(tiny)
    assert f"intervals: video {vid}: clip {vid}/90" in out and f"clip {vid}/91" in out


def run_check_data(root: Path) -> str:
    app = typer.Typer()
    train_cli.register(app, typer.Typer())
    result = CliRunner().invoke(app, ["check-data", str(root)])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())            # rich wraps at the test terminal's width
