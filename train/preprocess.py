"""Preprocessing, one function per modality (README "Architecture", contracts).

Training, evaluation, export checks and the live loop all call these functions. A second
copy anywhere else is a bug.

RGB (the reference report): frames resized so the short side is 256; train takes a
RandomResizedCrop of 224, eval a center crop of 224; then ImageNet mean and std.
Skeleton: keypoints rescaled from the frame they were detected on to the reference frame
(320x176), confidence < 0.1 is missing, x and y normalised by training-split statistics,
missing joints zeroed.

Every number comes from a ``Preprocessing`` (train/metadata.py), the section every artifact
stores; ``DEFAULT`` holds the values a new training run uses. Inference code passes the
artifact's own section, never these defaults.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .layout import NUM_JOINTS
from .metadata import KeypointStats, Preprocessing

__all__ = ["DEFAULT", "KeypointStats", "Preprocessing", "sample_frame_indices", "resize_short_side",
           "crop_and_normalize", "preprocess_rgb_frame", "mask_keypoints", "rescale_keypoints",
           "compute_keypoint_stats", "preprocess_skeleton"]

DEFAULT = Preprocessing()         # what a new training run uses (the reference report's numbers)


# ----------------------------------------------------------------------------- time
def sample_frame_indices(num_available: int, num_frames: int, train: bool = False,
                         rng: np.random.Generator | None = None) -> np.ndarray:
    """Pick exactly ``num_frames`` frame indices from a clip of ``num_available`` frames.

    Longer clips: sorted random selection (train) or evenly spaced (eval).
    Shorter clips: cyclic repetition (0, 1, 0, 1 for two frames).
    """
    if num_available <= 0:
        raise ValueError("a clip needs at least one frame, got 0")
    if num_available < num_frames:
        return np.arange(num_frames) % num_available
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        return np.sort(rng.choice(num_available, size=num_frames, replace=False))
    return np.round(np.linspace(0, num_available - 1, num_frames)).astype(np.int64)


# ----------------------------------------------------------------------------- RGB
def resize_short_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an HxWx3 uint8 image so its short side is ``size`` (aspect kept).

    INTER_AREA when shrinking (anti-aliased, like torchvision's antialias=True),
    bilinear when enlarging. This is the cacheable part of RGB preprocessing.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    h, w = image.shape[:2]
    scale = size / min(h, w)
    if scale == 1.0:
        return image
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (new_w, new_h), interpolation=interp)


def _random_resized_crop_box(h: int, w: int, rng: np.random.Generator, scale: tuple[float, float],
                             ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """torchvision RandomResizedCrop.get_params, on a numpy Generator: (top, left, height, width)."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    # fallback: central crop at the clamped aspect ratio
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def crop_and_normalize(resized: np.ndarray, prep: Preprocessing, train: bool = False,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """Short-side-resized RGB uint8 image -> float32 (3, S, S), S = prep.image_size, mean/std-normalised."""
    h, w = resized.shape[:2]
    size = prep.image_size
    if train:
        top, left, ch, cw = _random_resized_crop_box(h, w, rng if rng is not None else np.random.default_rng(),
                                                     prep.train_crop_scale, prep.train_crop_ratio)
        crop = cv2.resize(resized[top:top + ch, left:left + cw], (size, size), interpolation=cv2.INTER_LINEAR)
    else:
        if min(h, w) < size:
            raise ValueError(f"image {w}x{h} is smaller than the {size} crop; resize it first")
        top, left = (h - size) // 2, (w - size) // 2
        crop = resized[top:top + size, left:left + size]
    x = crop.astype(np.float32) * (1.0 / 255.0)
    x = (x - np.asarray(prep.mean, dtype=np.float32)) / np.asarray(prep.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))  # (3, S, S)


def preprocess_rgb_frame(image_rgb: np.ndarray, prep: Preprocessing, train: bool = False,
                         rng: np.random.Generator | None = None) -> np.ndarray:
    """One RGB frame (HxWx3 uint8, RGB order) -> model input (3, S, S) float32."""
    return crop_and_normalize(resize_short_side(image_rgb, prep.resize_short), prep, train=train, rng=rng)


# ----------------------------------------------------------------------------- skeleton
def mask_keypoints(kp: np.ndarray, threshold: float) -> np.ndarray:
    """Zero joints with confidence < threshold or non-finite values. kp: (..., 25, 3)."""
    kp = np.asarray(kp, dtype=np.float32)
    if kp.shape[-2:] != (NUM_JOINTS, 3):
        raise ValueError(f"keypoints must end in ({NUM_JOINTS}, 3), got shape {kp.shape}")
    bad = ~np.isfinite(kp).all(axis=-1) | (np.nan_to_num(kp[..., 2], nan=0.0) < threshold)
    out = np.where(bad[..., None], 0.0, kp).astype(np.float32)
    return out


def rescale_keypoints(kp: np.ndarray, source_size: tuple[int, int], prep: Preprocessing) -> np.ndarray:
    """Pixels of a (w, h) source frame -> pixels of prep's reference frame; masks missing joints."""
    sw, sh = source_size
    if sw <= 0 or sh <= 0:
        raise ValueError(f"source frame size must be positive, got {source_size}")
    kp = mask_keypoints(kp, prep.conf_threshold)
    rw, rh = prep.reference_size
    scale = np.array([rw / sw, rh / sh, 1.0], dtype=np.float32)
    return kp * scale  # zeros stay zeros


def compute_keypoint_stats(clips_ref: list[np.ndarray], threshold: float) -> KeypointStats:
    """Mean/std of x and y over every valid joint of the training split (reference pixels)."""
    xs, ys = [], []
    for kp in clips_ref:
        kp = np.asarray(kp).reshape(-1, 3)
        valid = kp[:, 2] >= threshold
        xs.append(kp[valid, 0])
        ys.append(kp[valid, 1])
    x, y = np.concatenate(xs) if xs else np.zeros(0), np.concatenate(ys) if ys else np.zeros(0)
    if x.size < 2:
        raise ValueError("no valid joints in the training split: cannot compute keypoint statistics")
    return KeypointStats((float(x.mean()), float(y.mean())),
                         (max(float(x.std()), 1.0), max(float(y.std()), 1.0)))


def preprocess_skeleton(kp_ref: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """(T, 25, 3) keypoints in reference pixels -> model input (3, T, 25) float32.

    x and y are normalised by ``prep.keypoint_stats``; joints below the confidence threshold
    (and every joint of an all-missing frame) are zero in all three channels, so confidence
    doubles as the mask.
    """
    stats = prep.keypoint_stats
    kp = mask_keypoints(kp_ref, prep.conf_threshold)   # (T, 25, 3)
    valid = kp[..., 2:3] > 0                            # (T, 25, 1)
    mean = np.array([*stats.mean, 0.0], dtype=np.float32)
    std = np.array([*stats.std, 1.0], dtype=np.float32)
    x = np.where(valid, (kp - mean) / std, 0.0).astype(np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))  # (3, T, 25)
