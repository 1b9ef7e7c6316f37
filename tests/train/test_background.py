"""The learned "no gesture" class: clips cut from the gaps, the errors when there is nothing to cut
them from, and a short training whose events on held-out synthetic videos match their labels."""
from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mgr.realtime.cli import app
from mgr.train.background import (BACKGROUND_INDEX, BACKGROUND_NAME, BackgroundConfig, background_index,
                                  run_class_names, scan_with_background)
from mgr.train.checkpoint import read_checkpoint
from mgr.train.fit import TrainConfig, fit
from mgr.train.synth import UntrimmedConfig, generate_untrimmed

CPU = dict(workers=0, device="cpu", allow_download=False)
# four well-separated classes (two hands and targets each): a set a short CPU training can learn
SMALL = UntrimmedConfig(videos=12, seed=3, seconds=(20.0, 20.0), videos_per_subject=2, test_fraction=0.34,
                        classes=(1, 14, 22, 30))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return generate_untrimmed(tmp_path_factory.mktemp("bg") / "data", SMALL, workers=2)


def labels(root: Path) -> list[dict]:
    with open(root / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_class_list_with_and_without_background():
    assert run_class_names(False)[-1] != BACKGROUND_NAME and len(run_class_names(False)) == 32
    names = run_class_names(True)
    assert len(names) == 33 and names[BACKGROUND_INDEX] == BACKGROUND_NAME == names[32]
    assert background_index(names) == 32 and background_index(run_class_names(False)) is None


def test_background_clips_lie_in_the_gaps_at_the_labelled_lengths(small):
    index = scan_with_background(str(small), None, BackgroundConfig(seed=0, uses_rgb=False))
    bg = [c for c in index.clips if c.label == BACKGROUND_INDEX]
    gestures = [c for c in index.clips if c.label != BACKGROUND_INDEX]
    assert len(gestures) == len(labels(small)) and len(bg) == round(0.25 * len(gestures))
    lengths = {c.num_frames for c in gestures}
    margin = round(0.2 * 25)
    by_video = {}
    for row in labels(small):
        by_video.setdefault(row["video_id"], []).append((int(row["start_frame"]), int(row["end_frame"])))
    for c in bg:
        video = c.clip_id.split("/")[0]
        a, b = c.frame_range
        assert c.num_frames in lengths or c.num_frames == b - a + 1
        for s, e in by_video[video]:
            assert b < s - margin or a > e + margin, f"{c.clip_id} {a}-{b} touches the label {s}-{e}"
    again = scan_with_background(str(small), None, BackgroundConfig(seed=0, uses_rgb=False))
    assert [c.frame_range for c in again.clips] == [c.frame_range for c in index.clips]   # a function of the seed
    other = scan_with_background(str(small), None, BackgroundConfig(seed=1, uses_rgb=False))
    assert [c.frame_range for c in other.clips] != [c.frame_range for c in index.clips]
    assert len(scan_with_background(str(small), None, BackgroundConfig(7, uses_rgb=False)).clips) == len(gestures) + 7


def test_an_overlapping_interval_is_skipped_in_training_with_a_warning(small, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(small, data)
    rows = labels(data)
    first = dict(rows[0], label_id="999", start_frame=str(int(rows[0]["start_frame"]) + 3))
    with open(data / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows + [first])
    with caplog.at_level(logging.WARNING):
        index = scan_with_background(str(data), None, BackgroundConfig(seed=0, uses_rgb=False))
    assert "skipped in training" in caplog.text and f"{rows[0]['video_id']}/999" not in {c.clip_id for c in index.clips}
    assert sum(c.label != BACKGROUND_INDEX for c in index.clips) == len(rows)


def test_no_video_and_no_frame_skeletons_is_a_clear_error(imigue_sample, tmp_path):
    # the real sample has OpenPose JSON for its three clips' frames only, and no video
    res = CliRunner().invoke(app, ["train", str(imigue_sample), "--modality", "skeleton", "--background",
                                   "--out", str(tmp_path / "run"), "--no-download", "--workers", "0"])
    assert res.exit_code == 2, res.output
    msg = " ".join(res.output.split())
    assert "video 298" in msg and "no per-frame OpenPose JSON outside the labelled intervals" in msg
    assert "mgr extract-keypoints" in msg and not (tmp_path / "run" / "split.json").exists()
    with pytest.raises(ValueError, match="no video file"):
        fit(str(imigue_sample), tmp_path / "rgb", TrainConfig(modality="rgb", background=True, epochs=1, **CPU))


def test_background_on_a_trimmed_layout_is_refused(synth_data, tmp_path):
    with pytest.raises(ValueError, match="official layout"):
        fit(str(synth_data), tmp_path / "run", TrainConfig(modality="skeleton", background=True, epochs=1, **CPU))


def _train(small: Path, out: Path, background: bool) -> Path:
    fit(str(small), out, TrainConfig(modality="skeleton", epochs=40, batch_size=16, lr=3e-3, background=background,
                                     split="cross-subject", protocol=str(small / "protocol.json"), **CPU))
    return out / "best.pt"


def _by_hand_f1(result: dict, small: Path, iou: float) -> float:
    """F1 of the JSON's events against labels.csv, counted independently of the scorer."""
    names = {int(r["class"]) for r in labels(small)}
    assert names                                     # the label file's ids are 1-based class ids
    tp = n_events = n_labels = 0
    for video, events in result["events"].items():
        rows = [r for r in labels(small) if r["video_id"] == video]
        n_events, n_labels = n_events + len(events), n_labels + len(rows)
        used = set()
        for r in rows:
            s, e, k = int(r["start_frame"]) / 25, int(r["end_frame"]) / 25, int(r["class"]) - 1
            best = None
            for j, ev in enumerate(events):
                inter = min(e, ev["end"]) - max(s, ev["start"])
                union = max(e, ev["end"]) - min(s, ev["start"])
                if j not in used and ev["index"] == k and inter / union >= iou and (best is None or inter / union > best[1]):
                    best = (j, inter / union)
            if best is not None:
                used.add(best[0])
                tp += 1
    p, r = tp / max(n_events, 1), tp / max(n_labels, 1)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@pytest.mark.slow
def test_short_training_with_background_finds_the_events_of_held_out_videos(small, tmp_path):
    best = _train(small, tmp_path / "bg", background=True)
    meta = read_checkpoint(best)["metadata"]
    assert meta.class_names[-1] == BACKGROUND_NAME and len(meta.class_names) == 33
    res = CliRunner().invoke(app, ["evaluate-stream", str(best), str(small), "--json", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "s.json").read_text())
    test_videos = {r["video_id"] for r in labels(small)
                   if int(r["subject_id"]) in set(json.loads((small / "protocol.json").read_text())["test_subjects"])}
    assert set(result["videos"]) == test_videos and result["background_class"] is True
    at = {m["iou"]: m for m in result["scores"]["by_iou"]}
    assert at[0.3]["f1"] > 0.5, at[0.3]
    for iou in (0.3, 0.5):
        assert at[iou]["f1"] == pytest.approx(_by_hand_f1(result, small, iou), abs=1e-9)
    assert at[0.3]["delay_p50"] is not None and 0.0 < at[0.3]["delay_p50"] < 3.0

    plain = _train(small, tmp_path / "plain", background=False)
    res = CliRunner().invoke(app, ["evaluate-stream", str(plain), str(small), "--json", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    assert "events come from the thresholds alone" in " ".join(res.output.split())
    assert json.loads((tmp_path / "p.json").read_text())["background_class"] is False
    assert np.isfinite(json.loads((tmp_path / "p.json").read_text())["scores"]["by_iou"][0]["f1"])
