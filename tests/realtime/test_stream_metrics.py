"""Event-to-label matching and the stream F1 on a hand-made set, computed by hand below."""
from __future__ import annotations

import json

import pytest

from mgr.realtime.events import GestureEvent
from mgr.realtime.stream_metrics import LabelInterval, match, score_stream, temporal_iou

NAMES = ["Scratching head", "Folding arms", "Rubbing eyes"]


def ev(index, start, end):
    return GestureEvent(NAMES[index], index, start, end, 0.8, 0.9, int(start * 10), int(end * 10))


def lab(video, index, start, end):
    return LabelInterval(video, NAMES[index], index, start, end)


def test_temporal_iou_arithmetic():
    assert temporal_iou(1, 3, 1, 3) == 1.0
    assert temporal_iou(0, 4, 1, 2) == pytest.approx(0.25)        # contained: 1 / 4
    assert temporal_iou(0, 2, 1, 3) == pytest.approx(1 / 3)       # overlap 1, union 3
    assert temporal_iou(0, 1, 1, 2) == 0.0 and temporal_iou(0, 1, 5, 6) == 0.0   # touching, disjoint
    assert temporal_iou(2, 2, 2, 2) == 0.0                        # empty union
    assert temporal_iou(0, 2, 1, 1) == 0.0                        # a point inside has no overlap length
    with pytest.raises(ValueError, match="ends before it starts"):
        temporal_iou(3, 1, 0, 1)


def test_match_is_one_to_one_greedy_on_iou_and_needs_the_class():
    labels = [lab("v", 0, 0.0, 2.0), lab("v", 0, 1.0, 3.0)]
    events = [ev(0, 1.0, 2.5), ev(0, 0.0, 1.2), ev(1, 0.0, 2.0)]
    # event 0: IoU 0.4 with label 0, 0.75 with label 1 -> label 1; event 1: 0.6 with label 0;
    # event 2 covers label 0 exactly but has another class
    got = match(events, labels, 0.3)
    assert [(i, j) for i, j, _ in got] == [(0, 1), (1, 0)]
    assert [v for _, _, v in got] == [pytest.approx(0.6), pytest.approx(0.75)]
    # a tie goes to the earlier label; the second identical label stays unmatched
    assert [(i, j) for i, j, _ in match([ev(0, 0, 1)], [lab("v", 0, 0, 1), lab("v", 0, 0, 1)], 0.5)] == [(0, 0)]
    # the threshold is inclusive
    assert len(match([ev(0, 0.0, 1.0)], [lab("v", 0, 0.0, 2.0)], 0.5)) == 1
    assert match([ev(0, 0.0, 1.0)], [lab("v", 0, 0.0, 2.0)], 0.51) == []
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        match([], [], 0.0)


# Two videos.
# v1 labels: L0 Scratching head 1-3, L1 Folding arms 5-7, L2 Rubbing eyes 10-11
#    events: E0 Scratching head 1.5-3.0 (IoU 1.5/2 = 0.75 with L0, delay +0.5)
#            E1 Scratching head 2.0-3.5 (duplicate on L0: IoU 1/2.5 = 0.4; L0 already taken -> fp)
#            E2 Rubbing eyes 5-7 (on L1 with the wrong class -> fp; L1 -> fn); L2 is missed -> fn
# v2 labels: L0 Folding arms 0-2, L1 Scratching head 4-6
#    events: E0 Folding arms 0.4-2.4 (IoU 1.6/2.4 = 0.667, delay +0.4)
#            E1 Scratching head 5-7 (IoU 1/3 = 0.333, delay +1.0)
# IoU 0.3: tp 3 (v1 L0-E0, v2 L0-E0, v2 L1-E1), fp 5 - 3 = 2, fn 5 - 3 = 2 -> P = R = F1 = 0.6
#          delays [0.4, 0.5, 1.0]: p50 0.5, p95 0.5 + 0.9 * 0.5 = 0.95
#          per class: Scratching head tp 2 of 3 events, 2 labels -> 2*2 / (2*2 + 1 + 0) = 0.8
#                     Folding arms tp 1 of 1 event, 2 labels -> 2 / (2 + 0 + 1) = 0.667
#                     Rubbing eyes tp 0 -> 0
# IoU 0.5: v2 L1-E1 (0.333) no longer hits: tp 2, fp 3, fn 3 -> P = R = F1 = 0.4
#          delays [0.4, 0.5]: p50 0.45, p95 0.4 + 0.95 * 0.1 = 0.495; Scratching head 2 / (2 + 2 + 1) = 0.4
VIDEOS = [
    ([ev(0, 1.5, 3.0), ev(0, 2.0, 3.5), ev(2, 5.0, 7.0)],
     [lab("v1", 0, 1.0, 3.0), lab("v1", 1, 5.0, 7.0), lab("v1", 2, 10.0, 11.0)]),
    ([ev(1, 0.4, 2.4), ev(0, 5.0, 7.0)],
     [lab("v2", 1, 0.0, 2.0), lab("v2", 0, 4.0, 6.0)]),
]


def test_hand_made_set_scores_as_computed_by_hand():
    scores = score_stream(VIDEOS, ious=(0.3, 0.5))
    assert (scores.videos, scores.labels, scores.events) == (2, 5, 5)
    s = scores.at(0.3)
    assert (s.tp, s.fp, s.fn, s.matched) == (3, 2, 2, 3)
    assert (s.precision, s.recall, s.f1) == (pytest.approx(0.6), pytest.approx(0.6), pytest.approx(0.6))
    assert s.delay_p50 == pytest.approx(0.5) and s.delay_p95 == pytest.approx(0.95)
    assert s.per_class_f1 == {"Scratching head": pytest.approx(0.8), "Folding arms": pytest.approx(2 / 3),
                              "Rubbing eyes": 0.0}


def test_the_iou_threshold_changes_the_result():
    s = score_stream(VIDEOS, ious=(0.5,)).at(0.5)
    assert (s.tp, s.fp, s.fn) == (2, 3, 3) and s.f1 == pytest.approx(0.4)
    assert s.delay_p50 == pytest.approx(0.45) and s.delay_p95 == pytest.approx(0.495)
    assert s.per_class_f1["Scratching head"] == pytest.approx(0.4)
    assert score_stream(VIDEOS, ious=(0.8,)).at(0.8).tp == 0                   # no pair reaches 0.8


def test_per_class_f1_lists_only_classes_with_labels_or_events_and_uses_class_names():
    videos = [([ev(0, 0.0, 1.0)], [lab("v", 0, 0.0, 1.0)])]
    s = score_stream(videos, ious=(0.3,)).at(0.3)
    assert s.per_class_f1 == {"Scratching head": 1.0} and s.f1 == 1.0
    named = score_stream(videos, ious=(0.3,), class_names=["head scratch", "b", "c"]).at(0.3)
    assert named.per_class_f1 == {"head scratch": 1.0}


def test_undefined_ratios_are_zero_and_delays_none():
    s = score_stream([([], [lab("v", 0, 0, 1)]), ([], [])], ious=(0.3,)).at(0.3)
    assert (s.tp, s.fp, s.fn, s.precision, s.recall, s.f1) == (0, 0, 1, 0.0, 0.0, 0.0)
    assert s.delay_p50 is None and s.delay_p95 is None
    s = score_stream([([ev(1, 0, 1)], [])], ious=(0.3,)).at(0.3)
    assert (s.fp, s.recall, s.f1) == (1, 0.0, 0.0) and s.per_class_f1 == {"Folding arms": 0.0}


def test_to_dict_is_json_and_bad_arguments_are_named():
    d = json.loads(json.dumps(score_stream(VIDEOS).to_dict()))
    assert [x["iou"] for x in d["by_iou"]] == [0.3, 0.5] and d["by_iou"][0]["f1"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="scored at"):
        score_stream(VIDEOS).at(0.7)
    with pytest.raises(ValueError, match="one .events, labels. pair per video"):
        score_stream([([], [lab("a", 0, 0, 1), lab("b", 0, 0, 1)])])
    with pytest.raises(ValueError, match="ious is empty"):
        score_stream(VIDEOS, ious=())
    with pytest.raises(ValueError, match="outside class_names"):
        score_stream(VIDEOS, class_names=["only one"])
