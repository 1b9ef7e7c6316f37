"""Overlay drawing at two resolutions, and the JSONL / mp4 writers."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from mgr.realtime.body25 import center_crop_box
from mgr.realtime.events import EventView
from mgr.realtime.outputs import JSONL_KEYS, JsonlSink, VideoSink, prediction_record
from mgr.realtime.overlay import OverlayInfo, class_colour, fit_text, render
from mgr.realtime.pipeline import Prediction
from mgr.train.layout import EDGES


def prediction(size, status="ok"):
    w, h = size
    box = center_crop_box(size, (320, 176))
    kp = np.zeros((25, 3), np.float32)
    kp[:9] = [(w * (0.3 + 0.04 * j), h * (0.3 + 0.04 * j), 0.9) for j in range(9)]
    top = (("Buckle button / pulling shirt collar / adjusting tie", 0.61), ("Folding arms", 0.2),
           ("Scratching back", 0.1), ("Shaking body", 0.05), ("Arms akimbo", 0.04)) if status == "ok" else ()
    return Prediction(status, top, kp, box, 7, 280.0, 0.0, {"pose": 12.0, "encode": 8.0, "head": 1.0})


@pytest.mark.parametrize("size", [(640, 480), (1920, 1080)])
def test_render_keeps_size_draws_panels_and_skeleton(size):
    w, h = size
    frame = np.full((h, w, 3), 128, np.uint8)
    info = OverlayInfo(30.0, 10.0, 3, {"capture": 1.0, "pose": 12.0, "encode": 8.0, "head": 1.0, "draw": 2.0})
    out = render(frame, prediction(size), info)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert (frame == 128).all()                                  # the input frame is untouched
    assert out[5, 5].max() < 128                                 # dark panel behind the top-5
    assert out[h - 3, 5].max() < 128                             # dark panel behind the stats
    x, y = int(w * 0.34), int(h * 0.34)                          # on the skeleton (joint 1)
    assert (out[y, x] != 128).any()


def test_mirror_flips_the_picture_but_not_the_text():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :320] = 200
    pred = prediction((640, 480), "no person")
    pred = Prediction(pred.status, (), None, pred.box, 0, 0.0, 0.0)
    mirrored = render(frame, pred, OverlayInfo(), mirror=True)
    assert mirrored[240, 600].max() > 50 and mirrored[240, 40].max() < 100   # bright half moved right
    # the text panel reads the same as in a frame that was already flipped
    flipped = render(np.ascontiguousarray(frame[:, ::-1]), pred, OverlayInfo(), mirror=False)
    np.testing.assert_array_equal(mirrored, flipped)


def test_long_class_names_are_shortened_to_fit():
    text = fit_text("Buckle button / pulling shirt collar / adjusting tie", 200, 0.55, 1)
    assert text.endswith("...") and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1)[0][0] <= 200


def test_every_layout_edge_is_drawn_between_valid_joints():
    frame = np.zeros((480, 640, 3), np.uint8)
    kp = np.zeros((25, 3), np.float32)
    a, b = EDGES[0]
    kp[a], kp[b] = (300, 200, 1.0), (300, 300, 1.0)
    pred = Prediction("warming up", (), kp, center_crop_box((640, 480), (320, 176)), 0, 0.0, 0.0)
    out = render(frame, pred, OverlayInfo())
    assert out[250, 300].max() > 0 and out[250, 500].max() == 0


LONG = "Buckle button / pulling shirt collar / adjusting tie " * 4


def _has_colour(region: np.ndarray, bgr) -> bool:
    return bool((region == np.array(bgr, np.uint8)).all(axis=-1).any())


@pytest.mark.parametrize("size", [(640, 480), (1920, 1080)])
def test_event_strip_draws_class_coloured_segments_at_their_time(size):
    w, h = size
    frame = np.full((h, w, 3), 128, np.uint8)
    # now 30 s, horizon 30 s: a closed event 10-20 s (x from w/3 to 2w/3), the open one from 25 s
    view = EventView(30.0, ("Folding arms", 4, 25.0), ((10.0, 20.0, 7, "Scratching head"),
                                                       (25.0, 30.0, 4, "Folding arms")), 30.0)
    info = OverlayInfo(30.0, 10.0, 0, {"pose": 12.0})
    plain, drawn = render(frame, prediction(size), info), render(frame, prediction(size), OverlayInfo(
        30.0, 10.0, 0, {"pose": 12.0}, events=view))
    y = h - int(10 * h / 480)                                   # the strip's middle row
    assert (plain[y] != drawn[y]).any()
    assert tuple(drawn[y, w // 2]) == class_colour(7)           # inside 10-20 s
    assert tuple(drawn[y, w - 3]) == class_colour(4)            # the open event grows to now
    assert not _has_colour(drawn[y, : w // 3 - 3], class_colour(7))   # nothing before 10 s
    assert not _has_colour(drawn[y, int(w * 0.7): int(w * 0.8)], class_colour(4))   # 21-24 s is empty
    assert class_colour(7) != class_colour(4) and class_colour(7) == class_colour(7 + 0)
    # the current event's swatch sits in the panel above the top-5, which moved down
    assert _has_colour(drawn[: int(50 * h / 480)], class_colour(4)) and not _has_colour(plain, class_colour(4))
    assert drawn[h - int(30 * h / 480), 5].max() < 128          # the stats panel moved above the strip


def test_event_overlay_survives_empty_long_and_old_events():
    frame = np.full((480, 640, 3), 128, np.uint8)
    pred = prediction((640, 480))
    for view in (EventView(0.0, None, ()),                                      # nothing yet
                 EventView(100.0, (LONG, 3, 99.0), ((99.0, 100.0, 3, LONG),)),  # a very long name
                 EventView(100.0, None, ((10.0, 20.0, 5, "old"), (60.0, 75.0, 6, "half in view")))):
        out = render(frame, pred, OverlayInfo(events=view))
        assert out.shape == frame.shape and out[2, 2].max() < 128
    strip = out[480 - 10]
    assert not _has_colour(strip, class_colour(5))                    # ended 80 s ago: outside the horizon
    # 60-75 s with now 100 s: clipped to 70-75 s, x 0..107 of 640
    assert tuple(strip[0]) == class_colour(6) and not _has_colour(strip[110:], class_colour(6))
    tiny = render(np.zeros((48, 64, 3), np.uint8), None, OverlayInfo(events=EventView(5.0, ("x", 0, 1.0), ())))
    assert tiny.shape == (48, 64, 3)


def test_jsonl_lines_are_whole_and_flushed(tmp_path):
    sink = JsonlSink(tmp_path / "p.jsonl")
    rec = prediction_record(prediction((640, 480)), {"pose": 12.345})
    sink.write(rec)
    # flushed per line: readable before close, as after Ctrl-C
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == rec
    sink.close()
    assert set(JSONL_KEYS) <= set(rec) and rec["ms"] == {"pose": 12.35}
    assert rec["top5"][0] == {"name": "Buckle button / pulling shirt collar / adjusting tie", "p": 0.61}
    assert rec["person"] is True and rec["frame"] == 7 and rec["t"] == 0.28
    assert "ms" not in prediction_record(prediction((640, 480)))


def test_video_sink_sizes_from_first_frame_and_rejects_other_suffixes(tmp_path):
    sink = VideoSink(tmp_path / "a.mp4", 12.0)
    for i in range(5):
        sink.write(np.full((48, 64, 3), i * 40, np.uint8))
    sink.close()
    cap = cv2.VideoCapture(str(tmp_path / "a.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    cap.release()
    with pytest.raises(ValueError, match=".mp4"):
        VideoSink(tmp_path / "a.avi", 12.0)


def test_timed_video_sink_plays_back_at_the_speed_it_happened(tmp_path):
    """Frames land on the file's 10 fps grid by capture time: a gap is held, early frames are skipped."""
    sink = VideoSink(tmp_path / "t.mp4", 10.0, (64, 48), timed=True)
    for t_ms, value in ((1000, 0), (1100, 60), (1350, 120), (1360, 180), (1400, 240)):
        sink.write(np.full((48, 64, 3), value, np.uint8), t_ms)
    with pytest.raises(ValueError, match="capture time"):
        sink.write(np.zeros((48, 64, 3), np.uint8))
    sink.close()
    cap = cv2.VideoCapture(str(tmp_path / "t.mp4"))
    levels = []
    while (got := cap.read())[0]:
        levels.append(int(round(got[1].mean() / 60.0)) * 60)
    assert levels == [0, 60, 120, 120, 120]            # 400 ms of capture time = 5 frames at 10 fps


def test_timed_video_sink_cuts_a_long_gap_instead_of_filling_it(tmp_path):
    sink = VideoSink(tmp_path / "g.mp4", 10.0, (64, 48), timed=True)
    sink.write(np.zeros((48, 64, 3), np.uint8), 0.0)
    sink.write(np.full((48, 64, 3), 200, np.uint8), 60_000.0)      # a minute later (a reconnect)
    sink.write(np.full((48, 64, 3), 200, np.uint8), 60_100.0)
    sink.close()
    assert int(cv2.VideoCapture(str(tmp_path / "g.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 3
