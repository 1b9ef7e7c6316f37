"""Scoring decoded events against labelled intervals: the F1 of micro-gesture online recognition.

Protocol. The MiGA challenge (Micro-gesture Analysis for Hidden Emotion Understanding, IJCAI;
track 2 "micro-gesture online recognition" on iMiGUE / SMG) ranks online recognition by F1
(challenge summary: "The 2nd Challenge on Micro-gesture Analysis for Hidden Emotion
Understanding (MiGA) 2024", CEUR Workshop Proceedings vol. 3848, 2024). That F1 was defined
by the same group with the SMG benchmark: H. Chen, H. Shi, X. Liu, X. Li, G. Zhao, "SMG: A
Micro-gesture Dataset Towards Spontaneous Body Gestures for Emotional Stress State Analysis",
IJCV 131, 2023 (doi:10.1007/s11263-023-01761-6). Its released online-recognition evaluation
counts a labelled micro-gesture as recognised when a prediction has its class and a temporal
overlap ratio (intersection / union of the two intervals) above 0.3; precision = recognised /
predictions and recall = recognised / labels, pooled over all test videos, and
F1 = 2PR / (P + R). We follow that definition; the challenge's own hosted scorer is not public
here, so its exact threshold could not be checked (score at 0.3, the SMG value, to compare).

The rule implemented here, exactly:

* tIoU of [s1, e1] and [s2, e2] = max(0, min(e1, e2) - max(s1, s2)) / (union length); 0 when
  the union is empty (two zero-length intervals).
* In each video, a (label, event) pair is a candidate hit when the class indices are equal and
  tIoU >= ``iou``. Hits are one-to-one (each label matches at most one event and each event at
  most one label), assigned greedily by tIoU, highest first; ties go to the earlier label, then
  the earlier event. This is the matching of temporal action detection (ActivityNet/THUMOS
  style) and differs from the released SMG script in two details: the script takes a label's
  first same-class prediction above the threshold and does not retire that prediction, so one
  long prediction can be counted for several labels; and it compares with ">" where we use ">="
  (equal only at exact ties).
* tp = hits, fp = events - tp, fn = labels - tp, summed over all videos (micro average).
  precision = tp / (tp + fp), recall = tp / (tp + fn), F1 = 2PR / (P + R); each is 0 where it
  is undefined (no events, no labels, or P + R = 0).
* Per-class F1 uses the same counts restricted to one class, for classes with labels or events.
* Detection delay of a hit = the stream time at which the event was reported (``detected``: the
  step that opened it) - label start, in seconds; p50 / p95 by linear interpolation, None
  without hits. It is when a program fed by the events learns of the gesture, so it includes
  the window the model needs, the confirmation time and the step rate. (An event's ``start`` is
  placed earlier, at the evidence: the centre of its first window.) An event without
  ``detected`` (made by hand) counts from its start.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .events import GestureEvent


@dataclass(frozen=True)
class LabelInterval:
    video: str         # the video the label belongs to
    class_name: str    # the labelled class's name
    index: int         # its class index (the model's output order)
    start: float       # seconds
    end: float         # seconds


def temporal_iou(a_start: float, a_end: float, b_start: float, b_end: float) -> float:
    """Intersection over union of two time intervals; 0 when they do not overlap."""
    if a_end < a_start or b_end < b_start:
        raise ValueError(f"an interval ends before it starts: [{a_start}, {a_end}], [{b_start}, {b_end}]")
    inter = max(0.0, min(a_end, b_end) - max(a_start, b_start))
    union = (a_end - a_start) + (b_end - b_start) - inter
    return inter / union if union > 0 else 0.0


def _check_iou(iou: float) -> None:
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou threshold must be in (0, 1], got {iou} (the SMG protocol uses 0.3)")


def match(events: Sequence[GestureEvent], labels: Sequence[LabelInterval], iou: float) -> list[tuple[int, int, float]]:
    """(label i, event j, iou) pairs of one video: a hit needs the same class index and tIoU >= iou;
    each label matches at most one event and each event at most one label; greedy on IoU,
    highest first (ties by earlier label, then earlier event). Sorted by label."""
    _check_iou(iou)
    pairs = []
    for i, lab in enumerate(labels):
        for j, ev in enumerate(events):
            if ev.index == lab.index:
                v = temporal_iou(lab.start, lab.end, ev.start, ev.end)
                if v >= iou:
                    pairs.append((-v, i, j))
    pairs.sort()
    used_labels, used_events, hits = set(), set(), []
    for neg, i, j in pairs:
        if i not in used_labels and j not in used_events:
            used_labels.add(i)
            used_events.add(j)
            hits.append((i, j, -neg))
    return sorted(hits)


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1; 0 where undefined."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


@dataclass(frozen=True)
class ThresholdScores:
    iou: float                       # the tIoU a hit needs
    tp: int                          # matched (label, event) pairs
    fp: int                          # events matched to no label
    fn: int                          # labels matched by no event
    precision: float                 # tp / (tp + fp), 0 without events
    recall: float                    # tp / (tp + fn), 0 without labels
    f1: float                        # harmonic mean of the two, 0 when both are 0
    per_class_f1: dict               # class name -> F1, classes with labels or events
    delay_p50: float | None          # seconds, event start - label start over the hits; None without hits
    delay_p95: float | None          # seconds, 95th percentile of the same
    matched: int                     # number of matched pairs the delays are over (= tp)

    def to_dict(self) -> dict:
        return dict(self.__dict__, per_class_f1=dict(self.per_class_f1))


@dataclass(frozen=True)
class StreamScores:
    videos: int                              # videos scored
    labels: int                              # labelled intervals, all videos
    events: int                              # decoded events, all videos
    by_iou: tuple[ThresholdScores, ...]      # one per IoU threshold, in the order asked

    def at(self, iou: float) -> ThresholdScores:
        for s in self.by_iou:
            if math.isclose(s.iou, iou):
                return s
        raise ValueError(f"no scores at iou {iou}; scored at {[s.iou for s in self.by_iou]}")

    def to_dict(self) -> dict:
        return {"videos": self.videos, "labels": self.labels, "events": self.events,
                "by_iou": [s.to_dict() for s in self.by_iou]}


def _check_video(labels: Sequence[LabelInterval], v: int) -> None:
    names = {lab.video for lab in labels}
    if len(names) > 1:
        raise ValueError(f"video {v}: its labels name {len(names)} videos ({sorted(names)[:3]}...); "
                         f"give one (events, labels) pair per video")


def _name_of(index: int, class_names: Sequence[str] | None, seen: dict) -> str:
    if class_names is not None:
        if not 0 <= index < len(class_names):
            raise ValueError(f"class index {index} is outside class_names (0..{len(class_names) - 1})")
        return class_names[index]
    return seen[index]


def _score_at(videos, iou: float, class_names, seen: dict) -> ThresholdScores:
    per_class: dict[int, list[int]] = {}          # index -> [tp, events, labels]
    delays: list[float] = []
    for events, labels in videos:
        for ev in events:
            per_class.setdefault(ev.index, [0, 0, 0])[1] += 1
        for lab in labels:
            per_class.setdefault(lab.index, [0, 0, 0])[2] += 1
        for i, j, _ in match(events, labels, iou):
            per_class[labels[i].index][0] += 1
            ev = events[j]
            delays.append((ev.detected if ev.detected is not None else ev.start) - labels[i].start)
    tp = sum(c[0] for c in per_class.values())
    n_events = sum(c[1] for c in per_class.values())
    n_labels = sum(c[2] for c in per_class.values())
    precision, recall, f1 = _prf(tp, n_events - tp, n_labels - tp)
    f1s = {_name_of(k, class_names, seen): _prf(c[0], c[1] - c[0], c[2] - c[0])[2] for k, c in sorted(per_class.items())}
    p50, p95 = (float(np.percentile(delays, 50)), float(np.percentile(delays, 95))) if delays else (None, None)
    return ThresholdScores(iou, tp, n_events - tp, n_labels - tp, precision, recall, f1, f1s, p50, p95, len(delays))


def score_stream(videos: Sequence[tuple[Sequence[GestureEvent], Sequence[LabelInterval]]],
                 ious: Sequence[float] = (0.3, 0.5), class_names: Sequence[str] | None = None) -> StreamScores:
    """Scores of decoded events against labels, one (events, labels) pair per video, at each IoU.

    ``class_names`` names the per-class F1 by index; without it the events' and labels' own
    class names are used."""
    if not ious:
        raise ValueError("ious is empty; give at least one tIoU threshold, e.g. (0.3, 0.5)")
    for iou in ious:
        _check_iou(iou)
    videos = [(list(events), list(labels)) for events, labels in videos]
    seen: dict[int, str] = {}
    for v, (events, labels) in enumerate(videos):
        _check_video(labels, v)
        seen.update({x.index: x.class_name for x in [*events, *labels]})
    by_iou = tuple(_score_at(videos, float(iou), class_names, seen) for iou in ious)
    return StreamScores(len(videos), sum(len(lab) for _, lab in videos), sum(len(ev) for ev, _ in videos), by_iou)
