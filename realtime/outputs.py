"""Outputs of the loop: the annotated video, the JSONL log of inference steps, the event log.

The JSONL files (steps and events) are flushed after every line, so an interrupted run leaves whole lines. The
video writer is released in ``close()``, which the loop calls in ``finally``, so Ctrl-C
leaves a playable file.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from mgr.train.atomic import durable_replace

from .pipeline import Prediction

log = logging.getLogger(__name__)

JSONL_KEYS = ("frame", "t", "status", "person", "top5", "state")  # plus "ms" where timings are logged


def check_output_path(path: str | Path, what: str) -> Path:
    """Fail before a run starts, naming the path, when its folder cannot be made or written."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: the {what} path is a folder; give a file name")
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{path}: cannot make the folder for the {what}: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: cannot write the {what}: {probe} is not writable")
    return path


def prediction_record(pred: Prediction, ms: dict | None = None, digits: int = 5, keypoints: bool = False) -> dict:
    """One JSONL line. ``ms`` (stage timings) is left out where output must be reproducible.

    ``keypoints``: add the step's Body_25 skeleton, 25 x [x, y, c] in frame pixels (null without a person).
    """
    rec = {
        "frame": int(pred.frame_index),
        "t": round(float(pred.timestamp_ms) / 1000.0, 4),
        "status": pred.status,
        "person": pred.keypoints is not None,
        "top5": [{"name": n, "p": round(p, digits)} for n, p in pred.top],
        "state": pred.state,
    }
    if keypoints:
        kp = pred.keypoints
        rec["keypoints"] = None if kp is None else [[round(float(x), 2), round(float(y), 2), round(float(c), 4)]
                                                    for x, y, c in np.asarray(kp)]
    if ms is not None:
        rec["ms"] = {k: round(float(v), 2) for k, v in ms.items()}
    return rec


class JsonlSink:
    """One JSON object per line, flushed per line, so an interrupted run leaves whole lines.

    A failed write (disk full, device gone) truncates the file back to its last whole line
    and raises an OSError that names the file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "w", encoding="utf-8")
        self.lines = 0
        self._good = 0            # byte offset after the last whole line

    def write(self, record: dict) -> None:
        try:
            self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._fh.flush()
        except OSError as e:
            self._rollback()
            raise OSError(e.errno, f"{self.path}: cannot write predictions ({e.strerror}); "
                                   f"the file keeps the {self.lines} whole lines written before") from e
        self._good = self._fh.tell()
        self.lines += 1

    def _rollback(self) -> None:
        try:
            self._fh.truncate(self._good)
            self._fh.close()
        except OSError:
            pass

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


class VideoSink:
    """mp4 (MPEG-4 part 2, which every OpenCV wheel can write) at the source's fps.

    ``size`` None: the first frame's size (a camera's size is known only once it delivers).
    ``timed``: frames carry their capture time and land on the file's constant-rate grid
    (repeated across a gap, skipped when they come faster than ``fps``), so a live recording
    plays back at the speed it happened, whatever rate the display loop managed.
    """

    MAX_GAP_S = 10.0     # a longer gap (a camera reconnecting) is not filled frame by frame

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int] | None = None, timed: bool = False):
        self.path = Path(path)
        self.timed = timed
        self._t0: float | None = None
        if self.path.suffix.lower() != ".mp4":
            raise ValueError(f"{self.path}: the annotated video must be an .mp4 path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = float(fps)
        self.size = tuple(size) if size is not None else None
        self._writer = None
        self.frames = 0
        if self.size is not None:
            self._open()

    @property
    def partial_path(self) -> Path:
        """Frames go here first; the file takes its final name only once finalised and readable."""
        return self.path.with_name(f".{self.path.stem}.partial.mp4")

    def _open(self) -> None:
        self._writer = cv2.VideoWriter(str(self.partial_path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
        if not self._writer.isOpened():
            raise ValueError(f"{self.path}: cannot write a video here (is the folder writable?)")

    def write(self, image: np.ndarray, t_ms: float | None = None) -> None:
        copies = 1
        if self.timed:
            if t_ms is None:
                raise ValueError(f"{self.path}: a timed video needs each frame's capture time")
            self._t0 = t_ms if self._t0 is None else self._t0
            slot = int(round((t_ms - self._t0) * self.fps / 1000.0))
            copies = slot - self.frames + 1
            if copies > self.MAX_GAP_S * self.fps:      # re-anchor after a long gap: it plays as a cut
                self._t0 = t_ms - self.frames * 1000.0 / self.fps
                copies = 1
            if copies <= 0:
                return                  # faster than the file's rate: this slot is filled already
        if self.size is None:
            self.size = (image.shape[1], image.shape[0])
            self._open()
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size)
        for _ in range(copies):
            self._writer.write(image)
        self.frames += copies

    def close(self) -> None:
        """Finalise the mp4 and give it its final name; a file that does not read back is removed."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if self.frames == 0:              # the run failed or ended before its first frame: no video to keep
            self.partial_path.unlink(missing_ok=True)
            return
        cap = cv2.VideoCapture(str(self.partial_path))
        readable = cap.isOpened() and cap.read()[0]
        cap.release()
        if not readable:
            self.partial_path.unlink(missing_ok=True)
            raise OSError(f"{self.path}: the annotated video could not be written (disk full or folder "
                          f"read-only?); nothing was left under that name")
        durable_replace(self.partial_path, self.path)     # fsync, rename, fsync the folder
