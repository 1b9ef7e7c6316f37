"""MediaPipe Pose (33 landmarks) -> OpenPose Body_25, and the one framing step.

The mapping is the MediaPipe-to-Body_25 table of README "Architecture", kept here as data. Left and right are the
subject's own on both sides, so no swap happens (a person facing the camera shows their
right shoulder on the image's left in both formats).

Framing: a camera frame whose aspect ratio differs from the model's reference frame
(320x176 for the reference setup) is center-cropped to the reference aspect ratio before
anything else sees it. The RGB stream and the pose stage both receive that crop, and the
skeleton is then scaled from crop pixels to reference pixels by ``rescale_keypoints`` of
the training preprocessing (a uniform scale once the aspect ratios match). So a 4:3 webcam
or a portrait phone feeds the model the same geometry that 16:9 training video gave it.
Cropping (not padding) is chosen because training never saw padded borders.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mgr.train.layout import JOINT_INDEX, NUM_JOINTS
from mgr.train.preprocess import mask_keypoints

NUM_MEDIAPIPE_LANDMARKS = 33
VISIBILITY_FLOOR = 0.1   # below this MediaPipe visibility a landmark is drawn and written as missing

# Body_25 joint -> MediaPipe source: an index, a (a, b) midpoint, or None (no counterpart).
MEDIAPIPE_TO_BODY25: dict[str, int | tuple[int, int] | None] = {
    "Nose": 0,
    "Neck": (11, 12),        # midpoint of the shoulders
    "RShoulder": 12, "RElbow": 14, "RWrist": 16,
    "LShoulder": 11, "LElbow": 13, "LWrist": 15,
    "MidHip": (23, 24),      # midpoint of the hips
    "RHip": 24, "RKnee": 26, "RAnkle": 28,
    "LHip": 23, "LKnee": 25, "LAnkle": 27,
    "REye": 5, "LEye": 2,
    "REar": 8, "LEar": 7,
    "LBigToe": 31, "LHeel": 29,
    "RBigToe": 32, "RHeel": 30,
    "LSmallToe": None, "RSmallToe": None,  # MediaPipe has one toe point per foot
}
assert set(MEDIAPIPE_TO_BODY25) == set(JOINT_INDEX), "the table must name every Body_25 joint"


def mediapipe_to_body25(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """One person's MediaPipe landmarks -> Body_25 keypoints in pixels of a (width, height) image.

    landmarks: (33, 3) of normalised x, y in [0, 1] of that image and visibility.
    Returns (25, 3) float32 of x, y in pixels and confidence (= visibility). A midpoint
    joint takes the mean position and the smaller confidence; joints without counterpart
    and joints below the training confidence threshold (0.1) are all zeros, as in OpenPose.
    Joints MediaPipe extrapolates outside the image are missing too: OpenPose, which made
    the training keypoints, cannot report a joint it does not see.
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.shape != (NUM_MEDIAPIPE_LANDMARKS, 3):
        raise ValueError(f"expected MediaPipe landmarks of shape (33, 3), got {lm.shape}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    out = np.zeros((NUM_JOINTS, 3), dtype=np.float32)
    for name, src in MEDIAPIPE_TO_BODY25.items():
        j = JOINT_INDEX[name]
        if src is None:
            continue
        if isinstance(src, tuple):
            a, b = lm[src[0]], lm[src[1]]
            out[j] = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, min(a[2], b[2]))
        else:
            out[j] = lm[src]
    out[:, 0] *= width
    out[:, 1] *= height
    out[:, 2] = np.clip(out[:, 2], 0.0, 1.0)
    outside = (out[:, 0] < 0) | (out[:, 0] > width) | (out[:, 1] < 0) | (out[:, 1] > height)
    out[outside, 2] = 0.0
    # MediaPipe's visibility floor of the pose stage (non-finite or conf < 0.1 -> (0, 0, 0)); the
    # model's own threshold is applied again from the artifact by rescale_keypoints
    return mask_keypoints(out, VISIBILITY_FLOOR)


# ----------------------------------------------------------------------------- framing
@dataclass(frozen=True)
class FramingBox:
    """The center crop of a frame that matches the reference aspect ratio (pixels)."""
    x0: int      # left edge in the full frame
    y0: int      # top edge in the full frame
    width: int   # crop width
    height: int  # crop height

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def center_crop_box(frame_size: tuple[int, int], reference_size: tuple[int, int]) -> FramingBox:
    """The largest centered box of a (w, h) frame with the aspect ratio of ``reference_size``."""
    fw, fh = frame_size
    rw, rh = reference_size
    if min(fw, fh, rw, rh) <= 0:
        raise ValueError(f"sizes must be positive, got frame {frame_size}, reference {reference_size}")
    target = rw / rh
    if fw / fh > target:          # too wide: cut the sides
        cw, ch = min(fw, max(1, round(fh * target))), fh
    else:                         # too tall: cut top and bottom
        cw, ch = fw, min(fh, max(1, round(fw / target)))
    return FramingBox((fw - cw) // 2, (fh - ch) // 2, cw, ch)


def crop_frame(image: np.ndarray, box: FramingBox) -> np.ndarray:
    """The framed view of an HxWxC image (a contiguous copy, as MediaPipe needs)."""
    return np.ascontiguousarray(image[box.y0:box.y0 + box.height, box.x0:box.x0 + box.width])


def crop_to_frame(kp_crop: np.ndarray, box: FramingBox) -> np.ndarray:
    """Keypoints in crop pixels -> pixels of the full frame (for drawing); missing stay zero."""
    kp = np.asarray(kp_crop, dtype=np.float32).copy()
    valid = kp[..., 2] > 0
    kp[..., 0] = np.where(valid, kp[..., 0] + box.x0, 0.0)
    kp[..., 1] = np.where(valid, kp[..., 1] + box.y0, 0.0)
    return kp
