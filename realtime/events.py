"""The event decoder: per-step class probabilities of the live loop -> micro-gesture events.

A stateful, pure function of the step stream (no clock, no I/O): feed it ``(t, frame, probs)``
one step at a time and it returns the events each step finalises. The same stream always
gives the same events, so replay, live and the offline scorer agree.

Rules (``EventConfig`` holds the numbers; "step" is one inference step, times in seconds):

* Candidate of a step: its argmax class, if that is a gesture class (not the background
  class) with probability >= ``enter``; otherwise the step has no candidate.
* Opening: a candidate must stay the candidate on every step for ``min_enter_s`` (last step
  time - first step time) before its event opens. The event's start is the candidate's first
  step, so confirmation does not delay the start, and the confidence / peak include those steps.
* Hysteresis: an open event of class c continues while p_c >= ``exit``, so dips between
  ``exit`` and ``enter`` do not end it. It ends at its last step with p_c >= exit.
* Switch: an open event also ends when another class (background included) is the argmax
  with p >= ``enter`` on every step for ``min_enter_s``. The open event then ends at the last
  step before that challenger's first step; a gesture challenger opens (start = its first
  step), the background class opens nothing. Without a background class
  (``background_index=None``) the thresholds alone decide, with the same rules.
* Person lost: a ``None`` step (no person, warming up) ends an open event at its last step
  and emits it at once: no merge across a gap in which nobody was seen.
* Merge: a closed event is held pending for ``merge_gap_s``. If the same class opens again
  with a start within ``merge_gap_s`` of its end, the two become one event (steps-weighted mean
  confidence, max peak; the gap's steps count in neither). The pending event is emitted once a
  step's time exceeds end + merge_gap_s (and no same-class candidate that could still merge is
  in progress), when another class opens, on a ``None`` step, or in ``finish()``.
* Drop: an event is dropped at emission if end - start < ``min_duration_s``. Start and end are
  the times of its first and last step, so 5 steps at 10 steps/s last 0.4 s.
* Monotone: events never overlap and come out ordered by time. A candidate whose streak began
  while the previous event was still open (that event then fell below ``exit``) restarts its
  streak after that event's end; a step time earlier than the previous one is clamped to it
  (with one warning), so a jittering clock cannot reorder events.

Times. Each step's probabilities are evidence about a window of past frames, so the live loop
passes the decoder the centre of the step's window as ``t`` (a sliding window is labelled at
its centre) and the time the step ran as ``now``. Start and end are therefore evidence times;
``detected`` is the ``now`` of the step that opened the event, when the event became known.

``state`` is the open event's class name (from its confirmation on) or ``NO_GESTURE``.
The defaults were chosen on synthetic validation videos with ``mgr evaluate-stream --tune``
(``mgr.realtime.stream_metrics`` scores a choice); README "Events" says how.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

log = logging.getLogger(__name__)

BACKGROUND_NAME = "no gesture"   # the class name of the learned background class (index 32 of 33)
NO_GESTURE = "no gesture"        # the state string when no event is open
# Tolerance of the duration comparisons: step times on a 0.1 s grid are not exact in binary
# (0.3 - 0.1 < 0.2), and a streak of exactly min_enter_s must count as held.
_EPS = 1e-6


@dataclass(frozen=True)
class EventConfig:
    # Defaults: the best F1 at tIoU 0.5 of `mgr evaluate-stream --tune` on 12 synthetic validation
    # videos (a seed of their own, never the test videos) for a skeleton model trained with
    # --background; README "Events" gives the search and the test figures.
    enter: float = 0.4           # probability a gesture class must reach to open an event
    exit: float = 0.35           # an open event ends when its class falls below this (exit <= enter)
    min_enter_s: float = 0.12    # the class must stay the candidate this long before the event opens
    min_duration_s: float = 0.8  # events shorter than this (end - start, after merging) are dropped
    merge_gap_s: float = 0.4     # a same-class event starting within this gap after the previous end merges

    def __post_init__(self):
        for name in ("enter", "exit"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"EventConfig.{name} must be a probability in (0, 1], got {getattr(self, name)}")
        if self.exit > self.enter:
            raise ValueError(f"EventConfig.exit ({self.exit}) must be <= enter ({self.enter}): "
                             f"an event must be able to stay open at the level that opened it")
        for name in ("min_enter_s", "min_duration_s", "merge_gap_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"EventConfig.{name} must be a finite number of seconds >= 0, got {value}")


@dataclass(frozen=True)
class GestureEvent:
    class_name: str           # the class's name
    index: int                # the class's index in the model's output
    start: float              # seconds, time of the event's first step
    end: float                # seconds, time of its last step
    confidence: float         # mean probability of the class over the event's steps
    peak: float               # max probability of the class over the event's steps
    start_frame: int          # frame of the first step
    end_frame: int            # frame of the last step
    truncated: bool = False   # closed because the run ended while it was open
    steps: int = 1            # steps that make up the event (a merge's gap steps excluded)
    detected: float | None = None   # stream seconds of the step that opened the event: when a consumer
                                    # first learns of it (start and end are evidence times, see update())

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_record(self) -> dict:
        """One JSONL line; ``truncated`` appears only when true."""
        rec = {"event": "gesture", "class": self.class_name, "index": int(self.index),
               "start": round(float(self.start), 4), "end": round(float(self.end), 4),
               "confidence": round(float(self.confidence), 5), "peak": round(float(self.peak), 5),
               "start_frame": int(self.start_frame), "end_frame": int(self.end_frame)}
        if self.detected is not None:
            rec["detected"] = round(float(self.detected), 4)
        if self.truncated:
            rec["truncated"] = True
        return rec


@dataclass(frozen=True)
class EventView:   # what the overlay draws
    now: float                                         # seconds, time of the latest step
    current: tuple[str, int, float] | None             # open event: (class name, index, start seconds)
    recent: tuple[tuple[float, float, int, str], ...]  # (start, end, index, name), ending within horizon, oldest first
    horizon_s: float = 30.0                            # the span `recent` covers, ending at `now`
    committed_end: float | None = None                 # open event: the end it keeps whatever comes next
                                                       # (a rival streak can still cut it back to there)


class _Run:
    """A mutable accumulator: a candidate streak or an event being built (internal)."""
    __slots__ = ("index", "start", "start_frame", "end", "end_frame", "total", "peak", "steps", "detected")

    def __init__(self, index: int, t: float, frame: int, p: float):
        self.index, self.start, self.start_frame = index, t, frame
        self.end, self.end_frame, self.total, self.peak, self.steps = t, frame, p, p, 1
        self.detected: float | None = None

    def add(self, t: float, frame: int, p: float) -> None:
        self.end, self.end_frame = t, frame
        self.total += p
        self.peak = max(self.peak, p)
        self.steps += 1

    def absorb(self, later: "_Run") -> None:
        """Append a later run of the same class (a merge): exact steps-weighted mean."""
        self.end, self.end_frame = later.end, later.end_frame
        self.total += later.total
        self.peak = max(self.peak, later.peak)
        self.steps += later.steps

    def copy(self) -> "_Run":
        other = _Run(self.index, self.start, self.start_frame, 0.0)
        for name in self.__slots__:
            setattr(other, name, getattr(self, name))
        return other


def background_index_of(class_names: Sequence[str]) -> int | None:
    """Index of the ``BACKGROUND_NAME`` class, or None for a model without a background class."""
    return list(class_names).index(BACKGROUND_NAME) if BACKGROUND_NAME in class_names else None


class EventDecoder:
    """Hysteresis decoder of one step stream; see the module docstring for the rules.

    ``history_s`` bounds the emitted events kept for ``view()`` (the longest horizon it serves).
    """

    def __init__(self, cfg: EventConfig, class_names: Sequence[str], background_index: int | None,
                 history_s: float = 120.0):
        names = tuple(str(n) for n in class_names)
        if not names:
            raise ValueError("class_names is empty; give the model's class names in output order")
        if background_index is not None and not 0 <= background_index < len(names):
            raise ValueError(f"background_index {background_index} is outside 0..{len(names) - 1} "
                             f"(or None for a model without a background class)")
        if not history_s > 0:
            raise ValueError(f"history_s must be > 0 seconds, got {history_s}")
        self.cfg, self.names, self.background = cfg, names, background_index
        self.history_s = float(history_s)   # how far back view() can look
        self.reset()

    def reset(self) -> None:
        """Forget everything: open event, pending event, candidate streak and history."""
        self._now = self._stream_now = 0.0
        self._started = False
        self._warned_clock = False
        self._open: _Run | None = None       # the open event
        self._pending: _Run | None = None    # closed, waiting merge_gap_s for a same-class reopening
        self._streak: _Run | None = None     # current challenger: argmax with p >= enter, every step
        self._snapshot: _Run | None = None   # the open event as it was before the streak's first step
        self._history: deque[GestureEvent] = deque()   # emitted events within history_s

    @property
    def state(self) -> str:
        return NO_GESTURE if self._open is None else self.names[self._open.index]

    def update(self, t: float, frame: int, probs: np.ndarray | None, now: float | None = None) -> list[GestureEvent]:
        """One step. probs: the (num_classes,) probability vector of the step, or None when the
        step had no person / was warming up (an open event then closes at its last step).
        ``t`` and ``frame`` place the step's evidence (the live loop passes the centre of its
        window); ``now`` is the stream time the step ran at (default ``t``), which an event
        records as ``detected`` when it opens. Returns the events finalised by this step."""
        t = self._clock(float(t))
        self._stream_now = t if now is None else max(float(now), t)
        out: list[GestureEvent] = []
        if probs is None:
            self._person_lost(out)
        else:
            self._step(t, int(frame), self._check(probs), out)
        self._prune()
        return out

    def finish(self) -> list[GestureEvent]:
        """The run ended: close an open event (truncated, end = its last step), flush a pending one."""
        out: list[GestureEvent] = []
        if self._open is not None:
            self._close(self._open, out, truncated=True)
        self._flush(out)
        self._streak = self._snapshot = None
        return out

    def view(self, horizon_s: float = 30.0) -> EventView:
        """The open event and the events ending within the last ``horizon_s`` seconds."""
        if not 0 < horizon_s <= self.history_s:
            raise ValueError(f"horizon_s must be in (0, {self.history_s}] (the decoder's history_s), got {horizon_s}")
        since = self._now - horizon_s
        recent = [(e.start, e.end, e.index, e.class_name) for e in self._history if e.end >= since]
        pending = self._pending
        if pending is not None and pending.end >= since and not self._too_short(pending):
            recent.append((pending.start, pending.end, pending.index, self.names[pending.index]))
        current = committed = None
        if self._open is not None:
            name = self.names[self._open.index]
            current = (name, self._open.index, self._open.start)
            recent.append((self._open.start, self._now, self._open.index, name))
            # while a rival class builds its streak, the open event may still be cut back to where
            # the streak began (``_snapshot``); otherwise it keeps every step it has
            committed = (self._snapshot if self._snapshot is not None else self._open).end
        return EventView(self._now, current, tuple(recent), float(horizon_s), committed)

    # -- one step -------------------------------------------------------------------------

    def _clock(self, t: float) -> float:
        if self._started and t < self._now:
            if not self._warned_clock:
                log.warning("step time %.4f s is before the previous step (%.4f s); clamping to keep "
                            "events in order", t, self._now)
                self._warned_clock = True
            t = self._now
        self._now, self._started = t, True
        return t

    def _check(self, probs) -> np.ndarray:
        probs = np.asarray(probs)
        if probs.shape != (len(self.names),):
            raise ValueError(f"probs must have shape ({len(self.names)},) (one per class name), got {probs.shape}")
        return probs

    def _step(self, t: float, frame: int, probs: np.ndarray, out: list) -> None:
        top = int(probs.argmax())
        p_top = float(probs[top])
        self._track_streak(t, frame, top, p_top)
        if self._open is not None and self._continue_open(t, frame, float(probs[self._open.index]), out):
            if self._streak is not None:
                # the streak's earlier steps overlap the event that just ended: restart it here
                self._streak = _Run(top, t, frame, p_top)
        if self._open is None:
            self._maybe_open(out)
        self._maybe_emit_pending(t, out)

    def _track_streak(self, t: float, frame: int, top: int, p: float) -> None:
        """The challenger streak: the same argmax class with p >= enter on every step."""
        if p < self.cfg.enter or (self._open is not None and top == self._open.index):
            self._streak = self._snapshot = None
        elif self._streak is not None and self._streak.index == top:
            self._streak.add(t, frame, p)
        else:
            self._streak = _Run(top, t, frame, p)
            self._snapshot = self._open.copy() if self._open is not None else None

    def _confirmed(self) -> bool:
        s = self._streak
        return s is not None and s.end - s.start >= self.cfg.min_enter_s - _EPS

    def _continue_open(self, t: float, frame: int, p: float, out: list) -> bool:
        """Extend or end the open event; True when it ended by falling below ``exit``."""
        if p < self.cfg.exit:
            self._close(self._open, out)
            return True
        if self._confirmed():
            self._close(self._snapshot, out)   # ends before the challenger's first step
        else:
            self._open.add(t, frame, p)
        return False

    def _maybe_open(self, out: list) -> None:
        s = self._streak
        if not self._confirmed() or s.index == self.background:
            return
        pending = self._pending
        if pending is not None and pending.index == s.index and s.start - pending.end <= self.cfg.merge_gap_s + _EPS:
            pending.absorb(s)
            self._open, self._pending = pending, None
        else:
            self._flush(out)
            self._open = s.copy()
            self._open.detected = self._stream_now
        self._streak = self._snapshot = None
        log.debug("event opened: %s at %.3f s", self.names[s.index], self._open.start)

    def _maybe_emit_pending(self, t: float, out: list) -> None:
        pending = self._pending
        if pending is None or t <= pending.end + self.cfg.merge_gap_s + _EPS:
            return
        s = self._streak
        if s is not None and s.index == pending.index and s.start - pending.end <= self.cfg.merge_gap_s + _EPS:
            return   # a same-class candidate that began within the gap may still merge
        self._flush(out)

    def _person_lost(self, out: list) -> None:
        if self._open is not None:
            self._close(self._open, out)
        self._flush(out)
        self._streak = self._snapshot = None

    # -- closing and emitting -------------------------------------------------------------

    def _close(self, run: _Run, out: list, truncated: bool = False) -> None:
        """The open event ends as ``run``; it waits for a merge unless it was truncated."""
        self._open = None
        self._snapshot = None
        log.debug("event closed: %s %.3f-%.3f s", self.names[run.index], run.start, run.end)
        if truncated:
            self._flush(out)
            self._emit(run, out, truncated=True)
        else:
            self._pending = run

    def _flush(self, out: list) -> None:
        if self._pending is not None:
            self._emit(self._pending, out)
            self._pending = None

    def _emit(self, run: _Run, out: list, truncated: bool = False) -> None:
        if self._too_short(run):
            log.debug("dropped %s %.3f-%.3f s: shorter than min_duration_s", self.names[run.index], run.start, run.end)
            return
        event = GestureEvent(self.names[run.index], run.index, run.start, run.end, run.total / run.steps,
                             run.peak, run.start_frame, run.end_frame, truncated, run.steps, run.detected)
        out.append(event)
        self._history.append(event)

    def _too_short(self, run: _Run) -> bool:
        return run.end - run.start < self.cfg.min_duration_s - _EPS

    def _prune(self) -> None:
        since = self._now - self.history_s
        while self._history and self._history[0].end < since:
            self._history.popleft()


def decode_events(steps: Iterable[tuple], cfg: EventConfig,
                  class_names: Sequence[str], background_index: int | None) -> list[GestureEvent]:
    """All events of a finished step stream of ``(t, frame, probs-or-None[, now])``, ``finish()`` included."""
    decoder = EventDecoder(cfg, class_names, background_index)
    events: list[GestureEvent] = []
    for step in steps:
        events.extend(decoder.update(*step))
    events.extend(decoder.finish())
    return events
