"""LSL output (``--lsl NAME``) through pylsl: two Lab Streaming Layer outlets for LabRecorder, MNE-LSL...

Streams (README "Outputs to other programs"):

* ``NAME`` (type ``MicroGesture``, float32, the nominal rate is the inference rate): one
  sample per inference step, K + 75 channels: the probability of every class in the model's
  order, then the Body_25 skeleton in frame pixels, ``x0, y0, c0, x1, ...`` (joint order of
  ``mgr.train.layout.JOINT_NAMES``). NaN stands for "not known": the probabilities of a step
  without labels (no person, warming up) and the skeleton of a step without a person. The
  stream's description names every channel (``channels/channel`` with label, type and unit,
  after the XDF meta-data conventions), the classes in order and the producer.
* ``NAME-markers`` (type ``Markers``, one string channel, irregular rate): one sample per
  finished gesture event, its event-log record as compact JSON (README "Events").

Time stamps are ``pylsl.local_clock()`` times of the frame's capture, not of sending: a
step's sample carries the capture time of its frame, an event's marker the capture time of
the step that finished it (or the moment the run ended, for an event closed then). So a
recording lines the labels up with the video frames they describe, whatever the latency.

Closing: a consumer can no longer read what it has received once an outlet is gone, so when
a consumer is connected the outlets stay up ``linger_s`` after the last sample (a recorder
polling a few times a second gets the end of the run); without consumers they go at once.
"""
from __future__ import annotations

import json
import math
import os
import socket
import time
from typing import Callable

import numpy as np

from mgr.train.layout import JOINT_NAMES

from .events import GestureEvent
from .pipeline import Prediction
from .sinks import QueuedSink, SinkError, lsl_clock_offset

DATA_TYPE = "MicroGesture"
MARKER_TYPE = "Markers"
MANUFACTURER = "mgr"
KEYPOINT_VALUES = ("x", "y", "c")                 # per joint, in this order
_UNITS = {"probability": "normalized", "x": "pixels", "y": "pixels", "confidence": "normalized"}
_DATA, _MARKER = "data", "marker"


def data_channels(class_names: list[str], body25_names: list[str]) -> list[tuple[str, str, str]]:
    """(label, type, unit) of every channel of the data stream, in sample order."""
    channels = [(name, "probability", _UNITS["probability"]) for name in class_names]
    for joint in body25_names:
        for value, kind in zip(KEYPOINT_VALUES, ("x", "y", "confidence")):
            channels.append((f"{joint}_{value}", kind, _UNITS[kind]))
    return channels


class LslSink(QueuedSink):
    """A data outlet (a sample per step) and a marker outlet (a JSON string per event); never blocks the loop."""

    name = "lsl"
    linger_s = 0.5               # how long the outlets outlive the last sample while a consumer is connected

    def __init__(self, name: str, class_names: list[str], nominal_rate: float,
                 body25_names: list[str] | None = None):
        super().__init__()
        self.stream_name = name
        self.class_names = list(class_names)
        self.nominal_rate = float(nominal_rate)
        self.body25_names = list(JOINT_NAMES if body25_names is None else body25_names)
        if len(self.body25_names) != len(JOINT_NAMES):
            raise ValueError(f"body25_names must name {len(JOINT_NAMES)} joints, got {len(self.body25_names)}")
        self.channel_count = len(self.class_names) + len(KEYPOINT_VALUES) * len(self.body25_names)
        self._data = None            # pylsl.StreamOutlet of the steps
        self._markers = None         # pylsl.StreamOutlet of the events
        self._to_lsl: Callable[[float], float] | None = None
        self._local_clock: Callable[[], float] | None = None

    # ------------------------------------------------------------------ setup
    def _error(self, problem: str) -> SinkError:
        return SinkError(f"--lsl {self.stream_name}: {problem}")

    def _source_id(self, stream: str) -> str:
        # unique to this run on this host: two runs never pass for one source
        return f"{stream}-{socket.gethostname()}-{os.getpid()}"

    def _marker_info(self, pylsl):
        stream = f"{self.stream_name}-markers"
        info = pylsl.StreamInfo(stream, MARKER_TYPE, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string,
                                self._source_id(stream))
        desc = info.desc()
        mgr = desc.append_child("mgr")
        mgr.append_child_value("schema", "event")
        mgr.append_child_value("encoding", "json")
        self._describe_classes(desc)
        desc.append_child("acquisition").append_child_value("manufacturer", MANUFACTURER)
        return info

    def _data_info(self, pylsl):
        info = pylsl.StreamInfo(self.stream_name, DATA_TYPE, self.channel_count, self.nominal_rate,
                                pylsl.cf_float32, self._source_id(self.stream_name))
        desc = info.desc()
        channels = desc.append_child("channels")
        for label, kind, unit in data_channels(self.class_names, self.body25_names):
            channel = channels.append_child("channel")
            channel.append_child_value("label", label)
            channel.append_child_value("type", kind)
            channel.append_child_value("unit", unit)
        self._describe_classes(desc)
        mgr = desc.append_child("mgr")
        mgr.append_child_value("schema", "step")
        mgr.append_child_value("keypoints", "Body_25, frame pixels")
        mgr.append_child_value("missing", "NaN")
        desc.append_child("acquisition").append_child_value("manufacturer", MANUFACTURER)
        return info

    def _describe_classes(self, desc) -> None:
        classes = desc.append_child("classes")
        for name in self.class_names:
            classes.append_child_value("class", name)

    def open(self) -> None:
        if not self.stream_name.strip():
            raise self._error("the stream name is empty")
        if not (math.isfinite(self.nominal_rate) and self.nominal_rate >= 0.0):
            raise self._error(f"the nominal rate must be a finite number >= 0, got {self.nominal_rate}")
        try:
            import pylsl
        except (ImportError, OSError, RuntimeError) as e:   # OSError, RuntimeError: liblsl did not load
            raise self._error(f"pylsl is not usable ({e})") from None
        try:
            self._to_lsl = lsl_clock_offset()
            self._local_clock = pylsl.local_clock
            self._markers = pylsl.StreamOutlet(self._marker_info(pylsl))
            self._data = pylsl.StreamOutlet(self._data_info(pylsl))
        except (RuntimeError, ValueError, OSError) as e:
            self._markers = self._data = None
            raise self._error(f"cannot create the LSL outlets ({e})") from None
        self.start_sender()

    # ------------------------------------------------------------------ the loop's calls
    def sample(self, pred: Prediction) -> np.ndarray:
        """The data stream's sample of a step: K probabilities, then 25 x (x, y, c); NaN where unknown."""
        sample = np.full(self.channel_count, np.nan, np.float32)
        k = len(self.class_names)
        if pred.probs is not None:
            sample[:k] = np.asarray(pred.probs, np.float32).reshape(-1)
        if pred.keypoints is not None:
            sample[k:] = np.asarray(pred.keypoints, np.float32).reshape(-1)
        return sample

    def step(self, pred: Prediction, record: dict) -> None:
        self.put((_DATA, self.sample(pred), self._to_lsl(pred.captured_at)))

    def event(self, event: GestureEvent, record: dict, pred: Prediction | None) -> None:
        if record is None:
            record = event.to_record()
        stamp = self._local_clock() if pred is None else self._to_lsl(pred.captured_at)
        self.put((_MARKER, [json.dumps(record, separators=(",", ":"))], stamp))

    # ------------------------------------------------------------------ the sender thread
    def send(self, item: tuple) -> None:
        kind, sample, stamp = item
        outlet = self._data if kind == _DATA else self._markers   # a local reference: close() cannot free it meanwhile
        if outlet is None:
            raise OSError("the outlet is closed")
        try:
            outlet.push_sample(sample, stamp)
        except (RuntimeError, ValueError) as e:
            raise OSError(f"liblsl refused the sample ({e})") from None

    def close(self) -> None:
        super().close()
        outlets = [o for o in (self._data, self._markers) if o is not None]
        if any(o.have_consumers() for o in outlets):
            time.sleep(self.linger_s)
        # dropping the outlets destroys them: liblsl stops advertising the streams
        self._data = self._markers = None
