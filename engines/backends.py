"""One interface for every runtime: numpy in, logits out. Chosen by file suffix.

    backend = load_backend("model.onnx", device="cpu", threads=2)
    feats = backend.encode_frames(frames)            # (B, 3, 224, 224) -> (B, 512)
    logits = backend.classify(feats_nt, skeleton)    # (N, T, 512) | None, (N, 3, T, 25) | None -> (N, 32)
    logits = backend.predict(rgb, skeleton)          # (N, T, 3, 224, 224) | None, ... -> (N, 32)

``.pt`` runs torch eager, ``.onnx`` onnxruntime, ``.engine`` TensorRT. The optional
runtimes are imported inside their own modules only (``ort_backend``, ``tensorrt_backend``).
Every backend reads its metadata from the artifact, so callers need no training config.
"""
from __future__ import annotations

import abc
import os
from typing import Sequence

import numpy as np

from mgr.train.device import check_device as _check_device

from .artifacts import FEATURE_DIM, NUM_JOINTS, SKELETON_CHANNELS, check_metadata, runtime_for



class MissingRuntimeError(RuntimeError):
    """An optional runtime (onnxruntime, tensorrt) is not installed."""


def check_array(name: str, x: object, expected: Sequence[int | None]) -> np.ndarray:
    """Float32, C-contiguous view of ``x`` with shape ``expected`` (None: any size).

    A wrong shape is a ValueError naming the input, the expected and the actual shape.
    """
    if x is None:
        raise ValueError(f"{name}: missing; expected an array of shape {_fmt(expected)}")
    arr = np.ascontiguousarray(x, dtype=np.float32)
    ok = arr.ndim == len(expected) and all(e is None or e == a for e, a in zip(expected, arr.shape))
    if not ok or (arr.ndim > 0 and arr.shape[0] == 0):
        raise ValueError(f"{name}: expected shape {_fmt(expected)}, got {tuple(arr.shape)}")
    return arr


def _fmt(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


class Backend(abc.ABC):
    """Shared checks and the whole-clip ``predict``; subclasses run the two graphs."""

    runtime = "abstract"

    def __init__(self, metadata, source: str | os.PathLike):
        self.metadata = check_metadata(metadata, source)     # ArtifactMetadata
        self.source = str(source)
        self.uses_rgb, self.uses_skeleton = self.metadata.uses_rgb, self.metadata.uses_skeleton
        self.num_frames = self.metadata.num_frames
        self.class_names = list(self.metadata.class_names)
        side = self.metadata.preprocessing.image_size
        self.frame_shape = (3, side, side)                   # one preprocessed RGB frame

    # -- subclass hooks: inputs already checked, float32 and contiguous
    @abc.abstractmethod
    def _encode(self, frames: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def _classify(self, features: np.ndarray | None, skeleton: np.ndarray | None) -> np.ndarray: ...

    # -- public contract
    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """(B, 3, 224, 224) float32 -> (B, 512) float32 frame features."""
        if not self.uses_rgb:
            raise ValueError(f"{self.source}: modality {self.metadata.modality!r} has no RGB stream to encode")
        return self._encode(check_array("frames", frames, (None, *self.frame_shape)))

    def classify(self, features: np.ndarray | None, skeleton: np.ndarray | None) -> np.ndarray:
        """Clip head: (N, T, 512) features and/or (N, 3, T, 25) skeleton -> (N, num_classes) logits."""
        T = self.num_frames
        feats = check_array("features", features, (None, T, FEATURE_DIM)) if self.uses_rgb else None
        skel = check_array("skeleton", skeleton, (None, SKELETON_CHANNELS, T, NUM_JOINTS)) \
            if self.uses_skeleton else None
        if feats is not None and skel is not None and len(feats) != len(skel):
            raise ValueError(f"features and skeleton batch differ: {len(feats)} vs {len(skel)}")
        return self._classify(feats, skel)

    def predict(self, rgb: np.ndarray | None, skeleton: np.ndarray | None) -> np.ndarray:
        """Whole clip: (N, T, 3, 224, 224) and/or (N, 3, T, 25) -> logits, via encoder + head."""
        feats = None
        if self.uses_rgb:
            clips = check_array("rgb", rgb, (None, self.num_frames, *self.frame_shape))
            N, T = clips.shape[:2]
            feats = self.encode_frames(clips.reshape(N * T, *self.frame_shape))  # (N*T, 512)
            feats = feats.reshape(N, T, FEATURE_DIM)                          # (N, T, 512)
        return self.classify(feats, skeleton)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, modality={self.metadata.modality!r})"


def check_device(device: str) -> str:
    """cpu or cuda (the runtimes take no auto and no index): train.device's one check and message."""
    return _check_device(device, auto=False, indexed=False)


def load_backend(path: str | os.PathLike, device: str = "cpu", threads: int | None = None) -> Backend:
    """Open an artifact with the runtime its suffix names (.pt, .onnx, .engine)."""
    runtime = runtime_for(path)
    check_device(device)
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 (or None for the runtime default), got {threads}")
    if runtime == "torch":
        from .torch_backend import TorchBackend
        return TorchBackend(path, device=device, threads=threads)
    if runtime == "onnxruntime":
        from .ort_backend import OrtBackend
        return OrtBackend(path, device=device, threads=threads)
    from .tensorrt_backend import TensorRTBackend
    return TensorRTBackend(path, device=device)
