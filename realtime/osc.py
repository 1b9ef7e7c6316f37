"""OSC output (``--osc HOST:PORT``) through python-osc: UDP messages for TouchDesigner, Max, Unity...

Addresses (README "Outputs to other programs"):

* ``/mgr/top1 name p``: each step with labels (status ok or uncertain);
* ``/mgr/probs p0 ... pK``: each step with labels, every class in the model's order;
* ``/mgr/person 0|1``: each step;
* ``/mgr/event/start name confidence t``: once per event, as soon as it is certain to be
  written (the part of it nothing can take back has lasted ``--event-min``), at the latest
  just before its end, so every start is followed by its end; confidence is the class's
  probability at that step (its mean when sent with the end), t the event's start (seconds,
  the event log's clock);
* ``/mgr/event/end name confidence t0 t1``: when the event is written to the event log
  (confidence: its mean probability).

Strings are OSC strings, numbers float32 (python-osc's encoding of a Python float) and the
person flag an int32.
"""
from __future__ import annotations

import socket

from pythonosc.osc_message_builder import OscMessageBuilder

from .events import GestureEvent
from .pipeline import Prediction
from .sinks import OpenedEvents, QueuedSink, SinkError


def parse_host_port(text: str, option: str, default_host: str | None = None) -> tuple[str, int]:
    """'HOST:PORT' (or 'PORT' with a default host; '[v6]:PORT') -> (host, port); a clear error naming the option."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or (default_host or "")
    if not host:
        raise ValueError(f"{option} {text!r}: give HOST:PORT")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{option} {text!r}: the port must be a number") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"{option} {text!r}: the port must be 0-65535")
    return host, number


def _message(address: str, *args) -> bytes:
    builder = OscMessageBuilder(address=address)
    for a in args:
        builder.add_arg(a)
    return builder.build().dgram


class OscSink(QueuedSink):
    """python-osc messages over UDP; a full socket buffer or an unreachable host drops messages, never the loop."""

    name = "osc"

    def __init__(self, host: str, port: int, min_duration_s: float):
        super().__init__()
        self.host, self.port = host, port
        self._opened = OpenedEvents(min_duration_s)
        self._sock: socket.socket | None = None
        self._address: tuple | None = None

    def open(self) -> None:
        try:
            info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
        except socket.gaierror as e:
            raise SinkError(f"--osc {self.host}:{self.port}: cannot resolve the host ({e.strerror})") from None
        family, _, _, _, self._address = info
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)        # a full buffer drops the datagram (counted), never waits
        try:
            self._sock.connect(self._address)   # unreachable networks fail here, before the run
        except OSError as e:
            self._sock.close()
            raise SinkError(f"--osc {self.host}:{self.port}: cannot send there ({e.strerror})") from None
        self.start_sender()

    # the loop only queues (address, args); the sender thread encodes the datagrams
    def step(self, pred: Prediction, record: dict) -> None:
        if pred.top:
            name, p = pred.top[0]
            self.put(("/mgr/top1", (name, float(p))))
        if pred.probs is not None:
            self.put(("/mgr/probs", pred.probs))
        self.put(("/mgr/person", (int(pred.keypoints is not None),)))
        opened = self._opened.update(pred)
        if opened is not None:
            name, _, start, p = opened
            self.put(("/mgr/event/start", (name, p, float(start))))

    def event(self, event: GestureEvent, record: dict, pred: Prediction | None) -> None:
        if self._opened.unannounced(event):     # every end follows its start
            self.put(("/mgr/event/start", (event.class_name, float(event.confidence), float(event.start))))
        self.put(("/mgr/event/end", (event.class_name, float(event.confidence), float(event.start), float(event.end))))

    def send(self, item: tuple) -> None:
        address, args = item
        if address == "/mgr/probs":
            args = [float(v) for v in args]
        try:
            self._sock.send(_message(address, *args))
        except (BlockingIOError, ConnectionRefusedError):
            # a full send buffer, or (on loopback) no receiver yet: UDP semantics, the datagram is lost
            raise OSError("receiver not keeping up or not listening") from None

    def close(self) -> None:
        super().close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
