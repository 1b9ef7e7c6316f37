"""Sources: a fake camera (generated frames at a set rate, with a disconnect), files, folders, errors."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from mgr.realtime.sources import (EmulatedCamera, ImageFolderSource, LiveSource, SourceError, VideoFileSource,
                                  open_camera, open_source)
from rt_helpers import write_video


def numbered_frames(n, size=(64, 48)):
    return [np.full((size[1], size[0], 3), i, np.uint8) for i in range(n)]


class Opener:
    """open_capture for LiveSource: hands out fake cameras, counting opens; None once exhausted."""

    def __init__(self, cameras):
        self.cameras = list(cameras)
        self.opens = 0

    def __call__(self):
        self.opens += 1
        return self.cameras.pop(0) if self.cameras else None


def test_fake_camera_keeps_only_the_newest_frame_and_counts_drops():
    src = LiveSource(Opener([EmulatedCamera(numbered_frames(200), fps=200)]), "fake camera", max_reconnects=0)
    try:
        first = src.read()
        time.sleep(0.15)                     # the loop is busy; the camera keeps going
        second = src.read()
        assert second.index > first.index + 1                       # we got the newest, not the next
        assert int(second.image[0, 0, 0]) == second.index % 200
        assert src.dropped >= second.index - first.index - 1 > 0   # the skipped ones are counted
        assert second.timestamp_ms > first.timestamp_ms
    finally:
        src.close()


def test_fake_camera_disconnect_reconnects_then_ends_with_a_reason():
    cams = [EmulatedCamera(numbered_frames(5), fps=100, fail_after=5), EmulatedCamera(numbered_frames(5), fps=100, fail_after=3)]
    opener = Opener(cams)
    src = LiveSource(opener, "fake camera", max_reconnects=2, reconnect_delay_s=0.01)
    got = []
    try:
        while (f := src.read(timeout_s=2.0)) is not None:
            got.append(f)
            time.sleep(0.001)
    finally:
        src.close()
    assert 1 <= len(got) <= 8 and src.reconnects == 3 and opener.opens == 4   # reopened once, then 2 failures
    assert "disconnected" in src.end_reason and "2 reconnect attempts" in src.end_reason


def test_camera_that_does_not_open_names_the_index_and_suggests_video():
    with pytest.raises(SourceError) as e:
        open_camera(97, max_reconnects=0)
    assert "camera 97" in str(e.value) and "--video" in str(e.value)


def test_video_file_gives_every_frame_with_file_timestamps(tmp_path):
    path = write_video(tmp_path / "v.mp4", numbered_frames(6, (64, 48)), fps=20)
    src = open_source(str(path))
    assert isinstance(src, VideoFileSource) and src.fps == pytest.approx(20) and src.size == (64, 48)
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    src.close()
    assert [f.index for f in frames] == list(range(6))
    np.testing.assert_allclose([f.timestamp_ms for f in frames], [0, 50, 100, 150, 200, 250])
    assert "end of video" in src.end_reason


def test_missing_and_corrupt_video_files_are_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        VideoFileSource(tmp_path / "absent.mp4")
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(SourceError, match="cannot decode|no decodable"):
        src = VideoFileSource(bad)
        src.read()


def test_image_folder_skips_an_unreadable_image_in_natural_order(tmp_path):
    for i in (1, 2, 10):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "3.jpg").write_bytes(b"broken jpeg")
    src = open_source(str(tmp_path), folder_fps=10)
    assert isinstance(src, ImageFolderSource)
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 2, 10]      # 10 after 2: natural order
    assert [f.timestamp_ms for f in frames] == [0, 100, 200]
    assert [p.name for p in src.unreadable] == ["3.jpg"] and "1 unreadable" in src.end_reason


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(tmp_path)


def test_http_stream_from_a_local_server_plays_then_ends(tmp_path):
    import functools
    import http.server
    import socketserver
    import threading

    frames = numbered_frames(12, (64, 48))
    writer = cv2.VideoWriter(str(tmp_path / "s.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for f in frames:
        writer.write(f)
    writer.release()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    server = socketserver.TCPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        src = open_source(f"http://127.0.0.1:{server.server_address[1]}/s.avi", max_reconnects=3)
        got = 0
        while src.read(timeout_s=5.0) is not None:
            got += 1
        src.close()
    finally:
        server.shutdown()
        server.server_close()
    assert isinstance(src, LiveSource) and src.captured == 12 and got + src.dropped == 12
    # a file over HTTP has a known length: its end is the end, not a disconnect to retry forever
    assert src.end_reason.endswith("(end of stream)") and src.reconnects == 0


class StallingCamera(EmulatedCamera):
    """Delivers ``good`` frames, then hangs inside read() (a driver that stops answering)."""

    def __init__(self, frames, fps, good):
        super().__init__(frames, fps)
        self.good, self.unblock, self.released = good, threading.Event(), threading.Event()

    def read(self):
        if self._count >= self.good:
            self.unblock.wait()
            return False, None
        return super().read()

    def release(self):
        self.released.set()
        super().release()


def test_a_camera_that_hangs_is_reopened_and_the_stuck_reader_releases_it_later():
    stuck = StallingCamera(numbered_frames(10), fps=100, good=3)
    opener = Opener([stuck, EmulatedCamera(numbered_frames(10), fps=100, fail_after=4)])
    src = LiveSource(opener, "fake camera", max_reconnects=2, reconnect_delay_s=0.01, stall_s=0.3)
    got, t0 = [], time.perf_counter()
    try:
        while (f := src.read()) is not None:
            got.append(f)
            time.sleep(0.001)
    finally:
        src.close()
    assert time.perf_counter() - t0 < 10
    assert 2 <= len(got) <= 7 and opener.opens == 4 and src.reconnects == 3   # reopened after the hang
    assert "2 reconnect attempts" in src.end_reason
    assert not stuck.released.is_set()              # never released under a thread inside its read()
    stuck.unblock.set()
    assert stuck.released.wait(2.0)                 # the abandoned reader releases it once read() returns


def test_a_camera_that_keeps_hanging_ends_with_a_timeout_after_the_attempts():
    cams = [StallingCamera(numbered_frames(5), fps=100, good=2), StallingCamera(numbered_frames(5), fps=100, good=0)]
    opener = Opener(cams)
    src = LiveSource(opener, "fake camera", max_reconnects=1, reconnect_delay_s=0.01, stall_s=0.3)
    got = []
    try:
        while (f := src.read()) is not None:
            got.append(f)
    finally:
        src.close()
        for c in cams:
            c.unblock.set()
    assert 1 <= len(got) <= 2 and opener.opens == 2 and src.reconnects == 1
    assert src.end_reason == "fake camera: no frame for 0.3 s after 1 reconnect attempts"
    assert src.read() is None                          # stays ended


class FiniteStream(EmulatedCamera):
    """A stream that knows its length, as OpenCV reports for a file over HTTP."""

    def get(self, prop):
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(len(self.frames))
        if prop == cv2.CAP_PROP_POS_FRAMES:
            return float(self._count)
        return super().get(prop)


def test_a_stream_of_known_length_ends_without_reconnecting():
    opener = Opener([FiniteStream(numbered_frames(5), fps=200, fail_after=5)] * 5)
    src = LiveSource(opener, "stream", max_reconnects=3, reconnect_delay_s=0.01)
    try:
        while src.read() is not None:
            pass
    finally:
        src.close()
    assert src.captured == 5 and opener.opens == 1 and src.reconnects == 0
    assert src.end_reason == "stream ended (end of stream)"
