"""Outputs to other programs (LSL, OSC, WebSocket, stdout): the sink interface and its bounded queue.

The loop hands every sink each step (its JSONL record), each finished event (its event
record) and, to sinks that ask, each annotated frame. A network sink must never slow the
loop: it puts items on a bounded queue that a thread of its own sends, and when the queue
is full the oldest item is dropped and counted (the run summary reports the counts). File
outputs (mp4, JSONL, event log, stdout) are not sinks of this kind: they never drop.

A sink that cannot start (port in use, host unreachable, bad address) raises ``SinkError``
from ``open()``, which the CLI calls before the camera or file is opened.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from typing import Any, Callable

import numpy as np

from .events import GestureEvent
from .pipeline import Prediction

log = logging.getLogger(__name__)

QUEUE_ITEMS = 256            # per network sink (per client for the WebSocket server)


class SinkError(RuntimeError):
    """A sink that cannot start; the message names the address and the problem."""


class DropOldest:
    """A bounded FIFO: ``put`` never blocks; when full, the oldest item is dropped and counted."""

    def __init__(self, maxlen: int = QUEUE_ITEMS):
        self._items: deque = deque()
        self._maxlen = maxlen
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._items) >= self._maxlen:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Any | None:
        """The oldest item; None once closed and empty (or after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            return self._items.popleft()

    def close(self) -> None:
        """No more puts; ``get`` drains what is left, then returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class Sink:
    """What the loop calls. Every method but ``open`` and ``close`` must return at once."""

    name = "sink"
    wants_frames = False          # True: ``frame`` receives every annotated frame

    def open(self) -> None:
        """Bind or connect; raise SinkError (naming the address) when that is impossible."""

    def step(self, pred: Prediction, record: dict) -> None:
        """One inference step and its JSONL record."""

    def event(self, event: GestureEvent, record: dict, pred: Prediction | None) -> None:
        """A finished gesture event (its event-log record) and the step that finished it (None: the run ended)."""

    def frame(self, image_bgr: np.ndarray, pred: Prediction | None) -> None:
        """An annotated frame as drawn (only when ``wants_frames``)."""

    def close(self) -> None:
        """Send what is queued (briefly), then release every socket and thread."""

    def stats(self) -> dict:
        """{"sent": items delivered, "dropped": items dropped because the receiver was slow}."""
        return {"sent": 0, "dropped": 0}


class QueuedSink(Sink):
    """A sink whose items go through a DropOldest queue to one sender thread calling ``send``.

    ``send`` raising OSError (a receiver gone) counts the item as dropped and goes on: a
    vanished consumer never stops the run.
    """

    close_timeout_s = 2.0

    def __init__(self, maxlen: int = QUEUE_ITEMS):
        self.queue = DropOldest(maxlen)
        self.sent = 0
        self.failed = 0
        self._thread: threading.Thread | None = None

    def start_sender(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}", daemon=True)
        self._thread.start()

    def put(self, item: Any) -> None:
        self.queue.put(item)

    def send(self, item: Any) -> None:   # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _run(self) -> None:
        warned = False
        while True:
            item = self.queue.get()
            if item is None:
                return
            try:
                self.send(item)
                self.sent += 1
            except OSError as e:
                self.failed += 1
                if not warned:
                    log.warning("%s: cannot send (%s); items are dropped while it lasts", self.name, e)
                    warned = True

    def close(self) -> None:
        self.queue.close()
        if self._thread is not None:
            self._thread.join(self.close_timeout_s)
            self._thread = None

    def stats(self) -> dict:
        return {"sent": self.sent, "dropped": self.queue.dropped + self.failed}


class OpenedEvents:
    """Which open event a step makes known, once: (class name, index, start seconds, p at this step).

    An event opens in the decoder when its class has led for the confirmation time; it can
    still be dropped later when it ends shorter than the minimum duration, and a rival class
    that takes over can cut it back to where the rival's streak began. A receiver told "start"
    must hear "end", so an opening is reported only once the part of the event that nothing
    can take back (``EventView.committed_end``) has lasted the minimum duration. A merge
    continues the same event (same class and start) and is not reported again.
    """

    def __init__(self, min_duration_s: float):
        self.min_duration_s = min_duration_s
        self._announced: deque[tuple[int, float]] = deque(maxlen=16)

    def update(self, pred: Prediction) -> tuple[str, int, float, float] | None:
        view = pred.event_view
        if view is None or view.current is None:
            return None
        name, index, start = view.current
        end = view.committed_end if view.committed_end is not None else view.now
        key = (index, round(float(start), 6))
        if key in self._announced or end - start < self.min_duration_s - 1e-6:
            return None
        self._announced.append(key)
        p = float(pred.probs[index]) if pred.probs is not None else 0.0
        return name, index, start, p

    def unannounced(self, event: GestureEvent) -> bool:
        """True (once) for a finished event whose start was never reported: report it now, before its end.

        It happens when the event's last steps, which a rival's streak could still have cut off,
        turn out to stay (the event fell below ``exit`` instead): it was never certain while open.
        """
        key = (event.index, round(float(event.start), 6))
        if key in self._announced:
            return False
        self._announced.append(key)
        return True


def lsl_clock_offset() -> Callable[[float], float]:
    """perf_counter time -> pylsl.local_clock() time (both monotonic; the offset is taken once)."""
    import pylsl

    offset = pylsl.local_clock() - time.perf_counter()
    return lambda perf: perf + offset


class StdoutSink(Sink):
    """``--stdout-json``: every step record and event record as one JSON line on stdout, flushed per line.

    Like the JSONL file it never drops (a slow reader slows the run, as a pipe does). Event
    lines are told apart by their ``"event"`` key. A reader that goes away (``| head``) ends
    the output quietly; the run goes on with its other outputs.
    """

    name = "stdout"

    def __init__(self, stream=None):
        import sys

        self._stream = stream if stream is not None else sys.stdout
        self.sent = 0
        self._gone = False

    def _write(self, record: dict) -> None:
        if self._gone:
            return
        from .runner import _SigintShield    # a line is written whole even when Ctrl-C comes while stdout blocks

        try:
            with _SigintShield() as shield:
                self._stream.write(json.dumps(record, separators=(",", ":")) + "\n")
                self._stream.flush()
            self.sent += 1
            if shield.interrupted:
                raise KeyboardInterrupt
        except BrokenPipeError:
            self._gone = True
            try:     # so that the interpreter's own flush at exit does not fail on the closed pipe
                os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
            except (OSError, ValueError, AttributeError):
                pass
            log.warning("stdout was closed by its reader; no more JSON lines are written there")

    def step(self, pred: Prediction, record: dict) -> None:
        self._write(record)

    def event(self, event: GestureEvent, record: dict, pred: Prediction | None) -> None:
        self._write(record)

    def stats(self) -> dict:
        return {"sent": self.sent, "dropped": 0}
