"""Frame sources: a camera or stream (capture thread, newest frame only), a video file, a folder.

Every source hands out ``Frame`` objects through ``read()`` and returns None when it ends;
``end_reason`` then says why. Files are read frame by frame with their own timestamps, so a
replay is deterministic. A camera runs in a thread that keeps only the newest frame
(``CAP_PROP_BUFFERSIZE=1`` as well), so the display never lags behind reality; frames it
overwrites before the loop takes them are counted as dropped.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from mgr.train.naming import natural_key  # one natural sort for datasets and image folders

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://")


class SourceError(RuntimeError):
    """A source that cannot be opened or read (the message says which and what to try)."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray      # HxWx3 uint8, BGR (OpenCV order)
    index: int             # 0-based frame number within the source
    timestamp_ms: float    # file time for files, monotonic time since start for live sources
    captured_at: float     # time.perf_counter() when the frame was read (latency reference)


class FrameSource(Protocol):
    name: str
    fps: float               # nominal frames per second (0 when unknown)
    dropped: int             # frames captured but never handed out
    end_reason: str | None   # why read() returned None

    def read(self) -> Frame | None: ...
    def close(self) -> None: ...




# ----------------------------------------------------------------------------- files
class VideoFileSource:
    """A video file, every frame in order, timestamps from the container."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.is_file():
            raise SourceError(f"video file not found: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise SourceError(f"{self.path}: cannot decode this file as a video (corrupt, or a format "
                              f"this OpenCV build cannot read)")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.dropped = 0
        self.lost = 0                     # frames the header announces that could not be decoded
        self.end_reason: str | None = None
        self._index = 0

    def read(self) -> Frame | None:
        if self._cap is None:
            return None
        ok, image = self._cap.read()
        if not ok or image is None:
            if self._index == 0:
                raise SourceError(f"{self.path}: no decodable frame (corrupt or empty video)")
            self.lost = max(0, self.frame_count - self._index)
            self.end_reason = (f"end of video after {self._index} frames" if not self.lost else
                               f"video ended after {self._index} of the {self.frame_count} frames its header "
                               f"announces: {self.lost} frames lost (truncated or corrupt file)")
            return None
        ts = float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
        if self.fps > 0 and (ts <= 0 and self._index > 0):
            ts = self._index * 1000.0 / self.fps  # containers without timestamps
        frame = Frame(image, self._index, ts, time.perf_counter())
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource:
    """A folder of images in natural order, at a nominal ``fps``; unreadable images are skipped."""

    def __init__(self, folder: str | Path, fps: float = 25.0):
        self.folder = Path(folder)
        self.name = str(self.folder)
        if not self.folder.is_dir():
            raise SourceError(f"image folder not found: {self.folder}")
        self.files = sorted((p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                            key=natural_key)
        if not self.files:
            raise SourceError(f"{self.folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self.fps = float(fps)
        self.dropped = 0
        self.unreadable: list[Path] = []
        self.end_reason: str | None = None
        self._pos = 0
        self._index = 0

    def read(self) -> Frame | None:
        while self._pos < len(self.files):
            path = self.files[self._pos]
            self._pos += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("%s: unreadable image, skipped", path)
                self.unreadable.append(path)
                continue
            frame = Frame(image, self._index, self._index * 1000.0 / self.fps, time.perf_counter())
            self._index += 1
            return frame
        self.end_reason = f"end of folder after {self._index} images ({len(self.unreadable)} unreadable)"
        return None

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- live
class Capture(Protocol):
    """The part of cv2.VideoCapture a live source uses (a fake camera implements it in tests)."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def set(self, prop: int, value: float) -> bool: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


class LiveSource:
    """A camera or network stream read by a capture thread that keeps only the newest frame.

    Reconnects: a failed read, or no frame for ``stall_s`` (a camera that hangs inside its
    driver), starts up to ``max_reconnects`` consecutive attempts to reopen,
    ``reconnect_delay_s`` apart; a delivered frame resets the count. A stalled reader
    thread is abandoned, never touched while it is inside the driver, and releases its
    capture itself if the call ever returns. A stream of known length (a video file served
    over HTTP) that reaches its last frame has ended: no reconnect. When all attempts fail
    the source ends and ``end_reason`` says why.
    """

    def __init__(self, open_capture: Callable[[], Capture], name: str, max_reconnects: int = 3,
                 reconnect_delay_s: float = 1.0, not_open_hint: str = "", stall_s: float = 5.0):
        self.name = name
        self.max_reconnects = max_reconnects
        self.reconnect_delay_s = reconnect_delay_s
        self.stall_s = stall_s
        self._open_capture = open_capture
        self.dropped = 0
        self.captured = 0
        self.reconnects = 0          # reconnect attempts over the whole run
        self.end_reason: str | None = None
        self._failures = 0           # consecutive attempts since the last frame
        cap = self._open()
        if cap is None:
            raise SourceError(f"{name} did not open{not_open_hint}")
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._last_activity = self._t0
        self._gen = 0
        self._thread: threading.Thread | None = None
        self._start_reader(cap)

    def _open(self) -> Capture | None:
        cap = self._open_capture()
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            return None
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver keeps one frame, not a backlog
        return cap

    def _start_reader(self, cap: Capture | None) -> None:
        """A new reader thread; an older one, if stuck in the driver, is abandoned."""
        self._gen += 1
        self._thread = threading.Thread(target=self._run, args=(self._gen, cap), name=f"capture:{self.name}",
                                        daemon=True)
        self._thread.start()

    def _current(self, gen: int) -> bool:
        return gen == self._gen and not self._stop.is_set()

    def _run(self, gen: int, cap: Capture | None) -> None:
        try:
            while self._current(gen):
                if cap is None:
                    cap = self._reopen(gen)
                    if cap is None:
                        break
                    continue
                ok, image = cap.read()
                if not self._current(gen):      # abandoned while inside read(), or closed
                    break
                if ok and image is not None:
                    self._publish(image)
                    continue
                if _at_known_end(cap):
                    self.end_reason = f"{self.name} ended (end of stream)"
                    break
                cap.release()
                cap = None
        finally:
            if cap is not None:
                cap.release()
            with self._cond:
                self._cond.notify_all()

    def _reopen(self, gen: int) -> Capture | None:
        while self._current(gen):
            if self._failures >= self.max_reconnects:
                self.end_reason = (f"{self.name} ended or disconnected: no frames after {self.max_reconnects} "
                                   f"reconnect attempts")
                return None
            if self._stop.wait(self.reconnect_delay_s) or not self._current(gen):
                return None
            self._failures += 1
            self.reconnects += 1
            log.warning("%s: no frame; reconnect attempt %d of %d", self.name, self._failures, self.max_reconnects)
            cap = self._open()
            if cap is not None:
                return cap
        return None

    def _publish(self, image: np.ndarray) -> None:
        now = time.perf_counter()
        with self._cond:
            if self._latest is not None:
                self.dropped += 1  # overwritten before the loop took it
            self._latest = Frame(image, self.captured, (now - self._t0) * 1000.0, now)
            self.captured += 1
            self._failures = 0
            self._last_activity = now
            self._cond.notify_all()

    def read(self, timeout_s: float | None = None) -> Frame | None:
        """The newest frame not yet handed out; waits for one. None when the source ended.

        No frame for ``timeout_s`` (default ``stall_s``) counts as a stall: the source
        reopens, while attempts remain, and goes on waiting.
        """
        stall_s = self.stall_s if timeout_s is None else timeout_s
        with self._cond:
            while self._latest is None:
                if not self._thread.is_alive():
                    self.end_reason = self.end_reason or f"{self.name} stopped"
                    return None
                now = time.perf_counter()
                if now - self._last_activity >= stall_s:
                    if self._failures >= self.max_reconnects:
                        self._gen += 1          # abandon the stuck reader
                        tried = f" after {self._failures} reconnect attempts" if self._failures else ""
                        self.end_reason = f"{self.name}: no frame for {stall_s:g} s{tried}"
                        return None
                    log.warning("%s: no frame for %g s; reopening it", self.name, stall_s)
                    self._last_activity = now
                    self._start_reader(None)
                self._cond.wait(min(stall_s - (now - self._last_activity), 0.1) if stall_s > 0 else 0.1)
            frame, self._latest = self._latest, None
            return frame

    def close(self) -> None:
        """Stop the reader; it releases its capture. A reader stuck in the driver is left to exit on its own."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)


def _at_known_end(cap: Capture) -> bool:
    """True for a stream of known length (a file over HTTP) read to its last frame; cameras report none."""
    try:
        total = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        pos = float(cap.get(cv2.CAP_PROP_POS_FRAMES) or 0.0)
    except cv2.error:
        return False
    return total > 0 and pos >= total - 1


def open_camera(index: int, max_reconnects: int = 3, reconnect_delay_s: float = 1.0) -> LiveSource:
    return LiveSource(lambda: cv2.VideoCapture(index), f"camera {index}", max_reconnects, reconnect_delay_s,
                      not_open_hint=("; is it connected and free? List cameras with `v4l2-ctl "
                                     "--list-devices` (Linux), or use --video PATH for a file"))


def open_stream(url: str, max_reconnects: int = 3, reconnect_delay_s: float = 1.0) -> LiveSource:
    return LiveSource(lambda: cv2.VideoCapture(url), f"stream {url}", max_reconnects, reconnect_delay_s,
                      not_open_hint="; check the URL and the network, or use --video PATH for a file")


def open_source(spec: str | int, folder_fps: float = 25.0, max_reconnects: int = 3):
    """A source from a camera index, a stream URL, a folder of images or a video file."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return open_camera(int(spec), max_reconnects)
    if spec.lower().startswith(STREAM_PREFIXES):
        return open_stream(spec, max_reconnects)
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, folder_fps)
    return VideoFileSource(path)


class EmulatedCamera:
    """A Capture that hands out given frames at ``fps`` in real time, like a camera.

    For benchmarks and tests without a webcam. ``fail_after``: reads after that many
    frames fail, as when a camera is unplugged. Frames repeat in a loop.
    """

    def __init__(self, frames, fps: float = 30.0, fail_after: int | None = None):
        if len(frames) == 0:
            raise ValueError("an emulated camera needs at least one frame")
        self.frames, self.fps, self.fail_after = list(frames), float(fps), fail_after
        self._count = 0
        self._next = time.perf_counter()
        self._open = True

    def isOpened(self) -> bool:
        return self._open

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self._open or (self.fail_after is not None and self._count >= self.fail_after):
            return False, None
        delay = self._next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + 1.0 / self.fps, time.perf_counter() - 1.0 / self.fps)
        frame = self.frames[self._count % len(self.frames)]
        self._count += 1
        return True, frame.copy()

    def set(self, prop: int, value: float) -> bool:
        return True

    def get(self, prop: int) -> float:
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self._open = False
