"""The live view server (``--serve``): real WebSocket clients and a real browser over loopback.

Steps and events reach every client in the loop's order; a client that stops reading loses
its oldest messages (counted) and never slows the loop or the other clients; the token, a
busy port and the page's addresses; the page in headless Chromium shows the top-5 names and
the video.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from mgr.realtime.events import EventConfig
from mgr.realtime.outputs import JsonlSink
from mgr.realtime.pipeline import LiveConfig, Recognizer
from mgr.realtime.runner import Outputs, run_replay
from mgr.realtime.serve import WebServer, is_loopback
from mgr.realtime.sinks import Sink, SinkError
from mgr.realtime.sources import VideoFileSource
from rt_helpers import FakeBackend, FakePose, pan_zoom_frames, write_video

# low thresholds: the fake backend's probabilities then make events within a short replay
EAGER_EVENTS = EventConfig(enter=0.1, exit=0.05, min_enter_s=0.0, min_duration_s=0.0)
REPLAY_CFG = LiveConfig(window_s=0.2, inference_fps=None, events=EAGER_EVENTS)


def wait_until(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class Reader(threading.Thread):
    """A websockets client that reads everything until the server closes the connection."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.hello: dict | None = None
        self.messages: list = []
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.start()
        assert self.ready.wait(10), f"no hello from {url}"
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        try:
            with connect(self.url, max_size=None, open_timeout=5) as ws:
                self.hello = json.loads(ws.recv(timeout=5))
                self.ready.set()
                for message in ws:                 # ends when the server closes normally
                    self.messages.append(json.loads(message))
        except BaseException as e:                 # handed to the test
            self.error = e
        finally:
            self.ready.set()

    def finish(self, timeout: float = 10.0) -> list:
        self.join(timeout)
        assert not self.is_alive(), "the client was not closed by the server"
        if self.error is not None:
            raise self.error
        return self.messages


class Recording(Sink):
    """What the server should send: every call of the loop, in order, as its message."""

    name = "recording"

    def __init__(self):
        self.messages = []

    def step(self, pred, record):
        self.messages.append({"type": "step", **record})

    def event(self, event, record, pred):
        self.messages.append({"type": "event", **record})


def stalled_socket(port: int, path: str) -> socket.socket:
    """A client that does the WebSocket handshake, then never reads again (tiny receive window)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):            # one byte at a time: read the response head only
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def replay(video, server: WebServer, tmp_path, **kw):
    recording = Recording()
    outputs = Outputs(jsonl=JsonlSink(tmp_path / "steps.jsonl"), events=JsonlSink(tmp_path / "events.jsonl"),
                      sinks=[server, recording])
    summary = run_replay(VideoFileSource(video), Recognizer(FakeBackend(), FakePose(), REPLAY_CFG), REPLAY_CFG,
                         outputs, **kw)
    return summary, recording.messages


@pytest.fixture
def server():
    s = WebServer(class_names=list(FakeBackend().metadata.class_names))
    s.open()
    yield s
    s.close()


def test_a_client_gets_the_hello_then_every_step_and_event_in_order(server, astronaut_video, tmp_path):
    client = Reader(f"ws://127.0.0.1:{server.port}/ws")
    assert client.hello == {"type": "hello", "classes": server.class_names} and len(server.class_names) == 32
    summary, expected = replay(astronaut_video, server, tmp_path)       # closes the server at the end
    messages = client.finish()
    assert summary.steps == 24 and summary.events > 0                     # the fake model makes events here
    assert messages == expected                                           # every step and event, in order
    steps = [m for m in messages if m["type"] == "step"]
    assert [m["frame"] for m in steps] == list(range(24))
    logged = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in m.items() if k != "type"} for m in steps] == logged    # the JSONL records
    events = [m for m in messages if m["type"] == "event"]
    assert len(events) == summary.events and all(m["event"] == "gesture" and "class" in m for m in events)
    assert summary.sinks["serve"] == {"sent": len(expected), "dropped": 0}
    server.close()                                                        # idempotent
    assert server.stats() == {"sent": len(expected), "dropped": 0}


def test_two_clients_both_get_every_step(server, astronaut_video, tmp_path):
    a = Reader(f"ws://127.0.0.1:{server.port}/ws")
    b = Reader(f"ws://127.0.0.1:{server.port}/ws")
    assert server.clients() == {"ws": 2, "video": 0}
    summary, expected = replay(astronaut_video, server, tmp_path)
    assert a.finish() == b.finish() == expected and len(expected) == summary.steps + summary.events
    assert server.stats() == {"sent": 2 * len(expected), "dropped": 0}


def test_a_client_that_stops_reading_slows_neither_the_loop_nor_the_other_client(astronaut_bgr):
    server = WebServer(class_names=["a", "b"], max_fps=1000.0)     # every frame is encoded (and latest-wins)
    server.open()
    try:
        stalled = [stalled_socket(server.port, "/ws"), stalled_socket(server.port, "/video")]
        reader = Reader(f"ws://127.0.0.1:{server.port}/ws")
        wait_until(lambda: server.clients() == {"ws": 2, "video": 1}, what="three clients")
        pad = "x" * 50_000                 # 600 steps: 30 MB per client, far beyond the socket buffers
        image = cv2.resize(astronaut_bgr, (640, 480))
        n, took = 600, []
        for i in range(n):
            t0 = time.perf_counter()
            server.step(None, {"frame": i, "pad": pad})
            server.frame(image, None)
            took.append(time.perf_counter() - t0)
            if i % 50 == 49:               # the reading client keeps up (within its queue of 256)
                wait_until(lambda: len(reader.messages) == i + 1, what=f"the reader to get step {i}")
        stats = server.stats()
        assert stats["dropped"] > 100, stats       # the stalled client's queue overflowed, oldest first
        assert max(took) < 0.25 and sum(took) < 3.0, (max(took), sum(took))   # the loop never waited
        assert server.frames_sent > 0
        t0 = time.perf_counter()
        server.close()                     # drains briefly, then drops the stalled clients
        assert time.perf_counter() - t0 < 5.0
        messages = reader.finish()
        assert [m["frame"] for m in messages] == list(range(n))           # the reading client got everything
        stats = server.stats()
        assert stats["sent"] + stats["dropped"] == 2 * n                  # every message accounted for
        assert stats["sent"] >= n and stats["dropped"] >= n - 256 - 4_200_000 // 50_000, stats
    finally:
        server.close()
        for s in stalled:
            s.close()


def test_video_frames_are_small_jpegs_at_most_max_fps(server, astronaut_bgr):
    big = cv2.resize(astronaut_bgr, (1280, 720))
    server.frame(big, None)                       # no viewer: nothing is kept or encoded
    assert server._latest_image is None
    with connect(f"ws://127.0.0.1:{server.port}/video", open_timeout=5) as viewer:
        wait_until(lambda: server.clients()["video"] == 1, what="the viewer")
        t0 = time.perf_counter()
        for _ in range(50):                       # far faster than max_fps (15)
            server.frame(big, None)
        assert time.perf_counter() - t0 < 0.5
        jpeg = viewer.recv(timeout=5)
        assert isinstance(jpeg, bytes) and jpeg[:2] == b"\xff\xd8"
        picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape == (360, 640, 3) and picture.std() > 20          # shrunk to 640 wide, the photo
        with pytest.raises(TimeoutError):
            viewer.recv(timeout=0.3)              # the other 49 calls came within one period: skipped
        time.sleep(1.0 / 15)
        server.frame(big, None)
        assert viewer.recv(timeout=5)[:2] == b"\xff\xd8"
    assert server.frames_sent == 2


def test_busy_port_token_page_and_not_found():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SinkError, match=rf"--serve 127\.0\.0\.1:{port}: cannot listen \(.*in use"):
            WebServer(port=port).open()

    server = WebServer(token="s3cret", class_names=["a"])
    server.open()
    try:
        base = f"127.0.0.1:{server.port}"
        assert server.url == f"http://{base}/?token=s3cret"
        for path, status in (("/ws", 401), ("/video", 401), ("/ws?token=wrong", 403), ("/video?token=s3cre", 403)):
            with pytest.raises(InvalidStatus) as err:
                connect(f"ws://{base}{path}", open_timeout=5).close()
            assert err.value.response.status_code == status, path
        with connect(f"ws://{base}/ws?token=s3cret", open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5)) == {"type": "hello", "classes": ["a"]}
        with connect(f"ws://{base}/video?token=s3cret", open_timeout=5):
            pass
        for path, status in (("/", 401), ("/?token=nope", 403), ("/nope?token=s3cret", 404)):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"http://{base}{path}", timeout=5)
            assert err.value.code == status, path
            err.value.close()
        with urllib.request.urlopen(server.url, timeout=5) as page:
            assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
            html = page.read().decode()
        assert "<title>mgr live</title>" in html and not re.search(r"(src|href)=\"https?:", html)   # self-contained
    finally:
        server.close()

    open_server = WebServer()                 # no token: everyone on this machine may watch
    open_server.open()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{open_server.port}/", timeout=5) as page:
            assert page.status == 200
        with pytest.raises(urllib.error.HTTPError, match="404") as err:
            urllib.request.urlopen(f"http://127.0.0.1:{open_server.port}/nope", timeout=5)
        err.value.close()
    finally:
        open_server.close()


def test_listening_beyond_this_machine_without_a_token_warns(caplog):
    assert is_loopback("127.0.0.1") and is_loopback("127.0.1.1") and is_loopback("::1") and is_loopback("[::1]")
    assert is_loopback("localhost") and not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    assert not is_loopback("example.org")
    with caplog.at_level(logging.WARNING, logger="mgr.realtime.serve"):
        # TEST-NET-1: no interface here has it, so nothing is ever exposed; the bind fails
        with pytest.raises(SinkError, match=r"--serve 192\.0\.2\.1:0: cannot listen"):
            WebServer(host="192.0.2.1").open()
    assert "anyone on the network can watch" in caplog.text
    with pytest.raises(ValueError, match="max_fps"):
        WebServer(max_fps=0)


def test_the_page_shows_the_video_and_the_top5_in_headless_chromium(tmp_path, astronaut_bgr, chromium):
    video = write_video(tmp_path / "long.mp4", pan_zoom_frames(astronaut_bgr, 250))    # 10 s of file
    names = list(FakeBackend().metadata.class_names)
    server = WebServer(class_names=names)
    server.open()
    stop, done = threading.Event(), {}

    def run():
        done["summary"], _ = replay(video, server, tmp_path, stop=stop, on_frame=lambda i: time.sleep(0.03))

    loop = threading.Thread(target=run, daemon=True)
    loop.start()

    def run_chromium(*args):
        out = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-background-networking", "--disable-component-update", "--disable-sync",
                              "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,700",
                              "--virtual-time-budget=3000", *args, server.url],
                             capture_output=True, text=True, timeout=30)
        return out

    try:
        for _ in range(3):                    # the page needs a step and a frame before the dump
            out = run_chromium("--dump-dom")
            top5 = re.search(r'<div id="top5">(.*?)</div>\s*</aside>', out.stdout, re.S)
            shown = re.findall(r"<span>([^<]+)</span>", top5.group(1)) if top5 else []
            img = re.search(r'<img id="video"[^>]*src="(blob:[^"]+)"', out.stdout)
            if len([n for n in shown if n in names]) == 5 and img:
                break
        else:
            pytest.fail(f"the page never showed 5 class names and a frame:\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}")
        assert img.group(1).startswith(f"blob:http://127.0.0.1:{server.port}/")
        state = re.search(r'<div id="state"[^>]*>([^<]*)<', out.stdout).group(1)
        assert state in names or state == "no gesture"

        shot = tmp_path / "page.png"
        for _ in range(3):
            shot.unlink(missing_ok=True)
            run_chromium(f"--screenshot={shot}")
            picture = cv2.imread(str(shot))
            assert picture is not None and picture.shape[:2] == (700, 1000)
            view = picture[150:450, 100:550].astype(np.float32)   # inside the video (left column)
            if view.std() > 25:               # the photo, not the black box "waiting for video"
                break
        else:
            pytest.fail(f"the video area of the screenshot stayed blank (std {view.std():.1f})")
        assert picture[20:600, 680:980].std() > 10           # the side panel has text and bars
    finally:
        stop.set()
        loop.join(30)
    assert not loop.is_alive() and done["summary"].steps > 0


def test_on_loopback_only_the_served_page_may_read_the_streams():
    """Another site open in the user's browser (its Origin) or a DNS-rebound name (its Host) is
    refused; the page served here, and clients that send no Origin (scripts), are not."""
    server = WebServer(class_names=["a"])
    server.open()
    try:
        base = f"127.0.0.1:{server.port}"
        for path in ("/ws", "/video"):
            with pytest.raises(InvalidStatus) as err:
                connect(f"ws://{base}{path}", origin="http://evil.example", open_timeout=5).close()
            assert err.value.response.status_code == 403, path
        with connect(f"ws://{base}/ws", origin=f"http://localhost:{server.port}", open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"
        with connect(f"ws://{base}/ws", open_timeout=5) as ws:          # no Origin: not a browser page
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"
        rebound = urllib.request.Request(f"http://{base}/", headers={"Host": f"evil.example:{server.port}"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(rebound, timeout=5)
        assert err.value.code == 403
        err.value.close()
    finally:
        server.close()


def test_a_token_with_url_characters_is_quoted_in_the_printed_url_and_an_empty_one_is_refused():
    server = WebServer(token="a+b&c d")
    server.open()
    try:
        with urllib.request.urlopen(server.url, timeout=5) as page:
            assert page.status == 200
    finally:
        server.close()
    with pytest.raises(SinkError, match="empty"):
        WebServer(token="")
