"""A live view in the browser (``--serve HOST:PORT``): one WebSocket server for the page and its streams.

* ``http://HOST:PORT/``: the page (``assets/live.html``): the annotated video, the top-5
  bars, the state and a 30 s event timeline, all drawn from the two streams below;
* ``ws://HOST:PORT/ws``: JSON text messages: first ``{"type": "hello", "classes": [...]}``
  (the model's class names, in output order), then ``{"type": "step", ...}`` per inference
  step (the JSONL record) and ``{"type": "event", ...}`` per finished event (the event-log
  record);
* ``ws://HOST:PORT/video``: binary messages, each one JPEG of the annotated frame (at most
  640 px wide, at most ``max_fps`` a second).

The server runs an asyncio loop in a thread of its own; the loop calling the sink never
waits for it. Each ``/ws`` client has a bounded drop-oldest queue: a client that reads too
slowly (or not at all) loses its oldest messages, counted in ``stats()["dropped"]``, and
never slows the run or the other clients. ``/video`` keeps only the newest frame per client:
a slow viewer sees fewer frames, never old ones (skipped frames are not counted as drops).

With ``token`` set, every address needs ``?token=TOKEN`` (the page passes its own on to its
streams). Without one, anyone who can reach the port can watch: the server warns when it
listens beyond this machine. Traffic is plain HTTP/WebSocket, unencrypted either way.
"""
from __future__ import annotations

import asyncio
import hmac
import http
import ipaddress
import json
import logging
import os
import socket
import threading
import time
from importlib import resources
from urllib.parse import parse_qs, quote, urlsplit

import cv2
import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .events import GestureEvent
from .pipeline import Prediction
from .sinks import QUEUE_ITEMS, DropOldest, Sink, SinkError

log = logging.getLogger(__name__)

PAGE_PATH, STEPS_PATH, VIDEO_PATH = "/", "/ws", "/video"
VIDEO_MAX_WIDTH = 640
JPEG_QUALITY = 70


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: localhost, 127.0.0.0/8, ::1."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def encode_jpeg(image_bgr: np.ndarray, max_width: int = VIDEO_MAX_WIDTH, quality: int = JPEG_QUALITY) -> bytes:
    """One JPEG of a BGR frame, shrunk (aspect kept) to at most ``max_width`` pixels wide."""
    h, w = image_bgr.shape[:2]
    if w > max_width:
        image_bgr = cv2.resize(image_bgr, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"cannot encode a frame of shape {image_bgr.shape} as JPEG")
    return buf.tobytes()


def _jsonable(value):
    """numpy scalars and arrays in a record -> plain numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class _QuietLog(logging.LoggerAdapter):
    """websockets' log with its per-connection INFO lines (open, closed) demoted to DEBUG (``--verbose``)."""

    def log(self, level, msg, *args, **kwargs):
        super().log(logging.DEBUG if level == logging.INFO else level, msg, *args, **kwargs)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Client:
    """One connection: its queue (``/ws``) or its newest JPEG (``/video``), and its wake-up."""

    def __init__(self, conn: ServerConnection, maxlen: int):
        self.conn = conn
        self.queue = DropOldest(maxlen)
        self.latest: bytes | None = None
        self.wake = asyncio.Event()
        self.gone = False            # the peer closed (or the connection failed)
        self.done = asyncio.Event()  # the sender has stopped sending


class WebServer(Sink):
    """The live view: page, JSON steps and events, JPEG video; never blocks the loop."""

    name = "serve"
    wants_frames = True
    drain_timeout_s = 1.0      # close(): time the clients get to receive what is queued
    close_timeout_s = 5.0      # close(): the longest it waits for the server thread

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 class_names: list[str] = (), max_fps: float = 15.0, maxlen: int = QUEUE_ITEMS):
        if not max_fps > 0:
            raise ValueError(f"max_fps must be a positive number of frames a second, got {max_fps}")
        if token is not None and not token:
            raise SinkError("--serve-token is empty: give a token, or leave the option out")
        self.host, self.port, self.token = host, int(port), token
        self.class_names = [str(n) for n in class_names]
        self.frame_period_s = 1.0 / float(max_fps)
        self.maxlen = maxlen
        self.url: str | None = None
        self.frames_sent = 0       # JPEGs delivered, all clients together (not part of stats())
        self._page = resources.files("mgr.realtime").joinpath("assets/live.html").read_bytes()
        self._hello = json.dumps({"type": "hello", "classes": self.class_names}, separators=(",", ":"))
        self._lock = threading.Lock()
        self._msg_clients: tuple[_Client, ...] = ()
        self._video_clients: tuple[_Client, ...] = ()
        self._sent = 0
        self._dropped_gone = 0     # drops of clients that left
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bound = threading.Event()
        self._error: str | None = None
        self._closed = False
        self._closing = False      # set on the server loop: senders drain, then stop
        self._wake_pending = False
        self._next_frame_at = 0.0
        self._latest_image: np.ndarray | None = None
        self._stop = asyncio.Event()          # both used on the server loop only (bound on first use)
        self._frame_ready = asyncio.Event()

    # -- the loop's side (any thread; returns at once) --------------------------------------

    def open(self) -> None:
        if self._thread is not None or self._closed:
            raise RuntimeError("WebServer.open() may be called once")
        address = _address(self.host, self.port)
        if not is_loopback(self.host):
            if self.token is None:
                log.warning("--serve %s: listening beyond this machine without a token: anyone on the network "
                            "can watch the stream (give a token to require it)", address)
            else:
                log.info("--serve %s: the token and the stream travel unencrypted (plain HTTP)", address)
        self._thread = threading.Thread(target=self._run, name="sink-serve", daemon=True)
        self._thread.start()
        if not self._bound.wait(10.0):
            self._error = "timed out starting the server"
        if self._error is not None:
            self.close()
            raise SinkError(f"--serve {address}: cannot listen ({self._error})")
        query = f"?token={quote(self.token, safe='')}" if self.token else ""
        self.url = f"http://{_address(self.host, self.port)}/{query}"

    def step(self, pred: Prediction, record: dict) -> None:
        self._broadcast("step", record)

    def event(self, event: GestureEvent, record: dict, pred: Prediction | None) -> None:
        self._broadcast("event", record if record is not None else event.to_record())

    def frame(self, image_bgr: np.ndarray, pred: Prediction | None) -> None:
        if not self._video_clients:
            return
        now, period = time.perf_counter(), self.frame_period_s
        # a grid of one frame per period, with a quarter period of slack for the frames' jitter
        # (30 fps in, 15 out: every second frame, not every third); never more than max_fps
        if now < self._next_frame_at - 0.25 * period:
            return                              # skipped before any copy or encode
        self._next_frame_at = max(self._next_frame_at, now - 0.25 * period) + period
        self._latest_image = image_bgr          # the loop draws each frame anew and never changes it afterwards
        self._call(self._frame_ready.set)

    def clients(self) -> dict:
        """Connected clients: {"ws": JSON stream clients, "video": video clients}."""
        return {"ws": len(self._msg_clients), "video": len(self._video_clients)}

    def stats(self) -> dict:
        with self._lock:
            dropped = self._dropped_gone + sum(c.queue.dropped for c in self._msg_clients)
            return {"sent": self._sent, "dropped": dropped}

    def close(self) -> None:
        """Give the clients ``drain_timeout_s`` for what is queued, close them, stop the thread."""
        self._closed = True
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._call(self._stop.set)
        thread.join(self.close_timeout_s)
        if thread.is_alive():
            log.warning("--serve %s: the server thread did not stop within %.0f s",
                        _address(self.host, self.port), self.close_timeout_s)

    def _broadcast(self, kind: str, record: dict) -> None:
        clients = self._msg_clients
        if not clients:
            return
        text = json.dumps({"type": kind, **record}, separators=(",", ":"), default=_jsonable)
        for c in clients:
            c.queue.put(text)
        if not self._wake_pending:
            self._wake_pending = True
            self._call(self._wake_senders)

    def _call(self, callback) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:       # the server loop has ended (closed, or failed to start)
            pass

    # -- the server thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:     # never leave open() waiting
            if not self._bound.is_set():
                self._error = f"{type(e).__name__}: {e}"
                self._bound.set()
            else:
                log.error("--serve %s: the server failed: %s", _address(self.host, self.port), e)

    async def _main(self) -> None:
        host, port = self.host.strip("[]"), self.port
        if port == 0:
            # one free port for one address (a name like localhost may resolve to several,
            # each of which would get a different free port)
            try:
                host = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][4][0]
            except socket.gaierror as e:
                self._error = f"cannot resolve the host: {e.strerror}"
                self._bound.set()
                return
        try:
            server = await serve(self._handle, host, port, process_request=self._process_request,
                                 compression=None, max_size=2**16, close_timeout=1.0,
                                 logger=_QuietLog(logging.getLogger(f"{__name__}.ws")))
        except OSError as e:
            self._error = os.strerror(e.errno) if e.errno else str(e)
            self._bound.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self._bound.set()
        encoder = asyncio.create_task(self._encode_frames())
        try:
            await self._stop.wait()
        finally:
            self._closing = True
            self._wake_senders()
            clients = (*self._msg_clients, *self._video_clients)
            waiting = [asyncio.create_task(c.done.wait()) for c in clients]
            if waiting:
                await asyncio.wait(waiting, timeout=self.drain_timeout_s)
                for w in waiting:
                    w.cancel()
            for c in clients:
                if not c.done.is_set():
                    # still not reading: a closing handshake would wait on the full buffer for
                    # ever (websockets bounds the wait for the peer's close, not the drain)
                    c.conn.transport.abort()
            encoder.cancel()
            server.close()
            try:
                await asyncio.wait_for(server.wait_closed(), self.close_timeout_s - self.drain_timeout_s - 0.5)
            except asyncio.TimeoutError:
                pass
            self._loop = None

    def _wake_senders(self) -> None:
        self._wake_pending = False
        for c in self._msg_clients:
            c.wake.set()
        if self._closing:
            for c in self._video_clients:
                c.wake.set()

    def _local_only(self, request: Request) -> str | None:
        """On loopback, why a request is refused: another site's page in the user's browser (its
        Origin), or a DNS-rebound name (its Host). None: allowed. Beyond loopback the token guards."""
        if not is_loopback(self.host):
            return None
        allowed = {f"{h}:{self.port}" for h in ("127.0.0.1", "localhost", "[::1]", self.host)}
        host = request.headers.get("Host")
        if host is not None and host.lower() not in allowed:
            return f"Host {host!r} is not this server's loopback address."
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() not in {f"http://{a}" for a in allowed}:
            return f"Origin {origin!r}: only the page served here may read this stream."
        return None

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        refused = self._local_only(request)
        if refused is not None:
            return conn.respond(http.HTTPStatus.FORBIDDEN, refused + "\n")
        if self.token is not None:
            given = parse_qs(url.query).get("token")
            if not given:
                return conn.respond(http.HTTPStatus.UNAUTHORIZED, "This stream needs ?token=TOKEN.\n")
            if not hmac.compare_digest(given[0].encode(), self.token.encode()):
                return conn.respond(http.HTTPStatus.FORBIDDEN, "Wrong token.\n")
        if url.path == PAGE_PATH:
            headers = Headers([("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(self._page))),
                               ("Cache-Control", "no-store"), ("Connection", "close")])
            return Response(http.HTTPStatus.OK.value, http.HTTPStatus.OK.phrase, headers, self._page)
        if url.path in (STEPS_PATH, VIDEO_PATH):
            return None                    # the WebSocket handshake goes on
        return conn.respond(http.HTTPStatus.NOT_FOUND, "Not found: the page is at /, the streams at /ws and /video.\n")

    async def _handle(self, conn: ServerConnection) -> None:
        path = urlsplit(conn.request.path).path
        client = _Client(conn, self.maxlen)
        video = path == VIDEO_PATH
        with self._lock:
            if video:
                self._video_clients += (client,)
            else:
                self._msg_clients += (client,)
        reader = asyncio.create_task(self._read_until_closed(client))
        try:
            if video:
                await self._send_video(client)
            else:
                await self._send_messages(client)
        except ConnectionClosed:
            pass
        finally:
            client.done.set()
            reader.cancel()
            self._forget(client)

    async def _read_until_closed(self, client: _Client) -> None:
        """Discard what the peer sends (keeps pings and the close handshake flowing); note when it leaves."""
        try:
            async for _ in client.conn:
                pass
        except ConnectionClosed:
            pass
        finally:
            client.gone = True
            client.wake.set()

    async def _send_messages(self, client: _Client) -> None:
        await client.conn.send(self._hello)
        while not client.gone:
            text = client.queue.get(timeout=0)
            if text is None:
                if self._closing:
                    return
                client.wake.clear()
                if len(client.queue) == 0 and not client.gone:
                    await client.wake.wait()
                continue
            try:
                await client.conn.send(text)    # a slow peer's backpressure waits here, for this client only
            except BaseException:               # closed, or cancelled at shutdown
                with self._lock:
                    self._dropped_gone += 1     # taken from the queue, never delivered
                raise
            self._sent += 1

    async def _send_video(self, client: _Client) -> None:
        while not client.gone and not self._closing:
            data, client.latest = client.latest, None
            if data is None:
                client.wake.clear()
                await client.wake.wait()
                continue
            await client.conn.send(data)
            self.frames_sent += 1

    async def _encode_frames(self) -> None:
        """Encode the newest stored frame off the server loop; hand it to every viewer (newest wins)."""
        loop = asyncio.get_running_loop()
        while True:
            await self._frame_ready.wait()
            self._frame_ready.clear()
            image, self._latest_image = self._latest_image, None
            if image is None or not self._video_clients:
                continue
            try:
                data = await loop.run_in_executor(None, encode_jpeg, image)
            except (ValueError, cv2.error) as e:
                log.warning("--serve: cannot encode a frame (%s); skipped", e)
                continue
            for c in self._video_clients:
                c.latest = data
                c.wake.set()

    def _forget(self, client: _Client) -> None:
        client.queue.close()
        with self._lock:
            self._msg_clients = tuple(c for c in self._msg_clients if c is not client)
            self._video_clients = tuple(c for c in self._video_clients if c is not client)
            self._dropped_gone += client.queue.dropped + len(client.queue)
