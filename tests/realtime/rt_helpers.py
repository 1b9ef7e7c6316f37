"""Helpers of the realtime tests (fakes and generated media), imported by tests and conftest."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from mgr.train.classes import class_names
from mgr.train.metadata import ArtifactMetadata, KeypointStats, Preprocessing
from mgr.train.layout import NUM_JOINTS


def pan_zoom_frames(image: np.ndarray, n: int, size=(640, 480)) -> list[np.ndarray]:
    """A short camera move over a still photo: zoom in and out, pan left and right."""
    W, H = size
    frames = []
    for i in range(n):
        a = i / max(n - 1, 1)
        z = (H / image.shape[0]) * (1.0 + 0.25 * np.sin(a * np.pi))
        dx = 40 * np.sin(2 * np.pi * a)
        M = np.array([[z, 0, (W - image.shape[1] * z) / 2 + dx], [0, z, (H - image.shape[0] * z) / 2 + 20]], np.float32)
        frames.append(cv2.warpAffine(image, M, (W, H), borderValue=(40, 40, 40)))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def fake_metadata(modality: str = "fusion", clip_seconds=None) -> ArtifactMetadata:
    prep = Preprocessing(keypoint_stats=KeypointStats((160.0, 88.0), (80.0, 44.0)))
    return ArtifactMetadata(modality=modality, class_names=tuple(class_names()), preprocessing=prep,
                            model_config={"modality": modality, "num_frames": 4}, clip_seconds=clip_seconds)


class FakeBackend:
    """The engines backend contract, deterministic and cheap: features are pooled pixels."""

    def __init__(self, modality: str = "fusion", clip_seconds=None):
        self.metadata = fake_metadata(modality, clip_seconds)
        self.uses_rgb = modality in ("fusion", "rgb")
        self.uses_skeleton = modality in ("fusion", "skeleton")
        rng = np.random.default_rng(0)
        self.w_rgb = rng.normal(size=(512, 32)).astype(np.float32)
        self.w_skel = rng.normal(size=(3 * 4 * NUM_JOINTS, 32)).astype(np.float32)
        self.encode_calls = 0
        self.encoded = 0
        self.classify_inputs = []

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        assert frames.ndim == 4 and frames.shape[1:] == (3, 224, 224) and frames.dtype == np.float32
        self.encode_calls += 1
        self.encoded += len(frames)
        pooled = frames.reshape(len(frames), 3, 16, 14, 16, 14).mean(axis=(3, 5))  # (B, 3, 16, 16)
        return np.ascontiguousarray(pooled.reshape(len(frames), -1)[:, :512], dtype=np.float32)

    def classify(self, features, skeleton) -> np.ndarray:
        self.classify_inputs.append((features, skeleton))
        logits = np.zeros((1, 32), np.float32)
        if self.uses_rgb:
            assert features.shape == (1, 4, 512)
            logits += features.mean(axis=1) @ self.w_rgb
        if self.uses_skeleton:
            assert skeleton.shape == (1, 3, 4, NUM_JOINTS)
            logits += skeleton.reshape(1, -1) @ self.w_skel
        return logits


class FakePose:
    """Pose stage stand-in: a fixed upper-body skeleton in the image's pixels, or None on schedule."""

    def __init__(self, present=lambda i: True):
        self.present = present
        self.calls = 0
        self.resets = 0

    def __call__(self, image_rgb, timestamp_ms=None):
        i, self.calls = self.calls, self.calls + 1
        if not self.present(i):
            return None
        h, w = image_rgb.shape[:2]
        kp = np.zeros((NUM_JOINTS, 3), np.float32)
        kp[:9] = [(w * (0.3 + 0.05 * j), h * (0.2 + 0.05 * j), 0.9) for j in range(9)]
        return kp

    def reset(self):
        self.resets += 1

    def close(self):
        pass


class ScriptedBackend(FakeBackend):
    """A skeleton model with a "no gesture" class whose n-th clip gives ``script[n]``:
    a class index made very likely, or None for "no gesture"."""

    def __init__(self, script):
        super().__init__("skeleton")
        self.metadata = replace(self.metadata, class_names=tuple(class_names()) + ("no gesture",))
        self.script, self.calls = list(script), 0

    def classify(self, features, skeleton):
        k = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        logits = np.zeros((1, 33), np.float32)
        logits[0, 32 if k is None else k] = 8.0
        return logits
