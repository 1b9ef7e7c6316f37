"""Pure-function tests of the MediaPipe -> Body_25 adapter and the framing step."""
from __future__ import annotations

import numpy as np
import pytest

from mgr.realtime.body25 import (MEDIAPIPE_TO_BODY25, center_crop_box, crop_frame, crop_to_frame,
                                 mediapipe_to_body25)
from mgr.train.layout import JOINT_INDEX, JOINT_NAMES
from mgr.train.preprocess import DEFAULT, rescale_keypoints

REFERENCE_SIZE = DEFAULT.reference_size

# README "Architecture", written out again on purpose: the test is the second reading of the table.
SINGLE = {0: 0, 2: 12, 3: 14, 4: 16, 5: 11, 6: 13, 7: 15, 9: 24, 10: 26, 11: 28, 12: 23, 13: 25, 14: 27,
          15: 5, 16: 2, 17: 8, 18: 7, 19: 31, 21: 29, 22: 32, 24: 30}
MIDPOINTS = {1: (11, 12), 8: (23, 24)}
MISSING = (20, 23)


def distinct_landmarks() -> np.ndarray:
    """Every MediaPipe landmark at its own place inside the image, visibility varying."""
    lm = np.zeros((33, 3), np.float32)
    lm[:, 0] = 0.1 + 0.8 * np.arange(33) / 32
    lm[:, 1] = 0.9 - 0.7 * np.arange(33) / 32
    lm[:, 2] = 0.5 + 0.5 * np.arange(33) / 32
    return lm


def test_table_covers_every_joint_once():
    assert set(MEDIAPIPE_TO_BODY25) == set(JOINT_NAMES)
    for j, src in SINGLE.items():
        assert MEDIAPIPE_TO_BODY25[JOINT_NAMES[j]] == src
    for j, src in MIDPOINTS.items():
        assert MEDIAPIPE_TO_BODY25[JOINT_NAMES[j]] == src
    for j in MISSING:
        assert MEDIAPIPE_TO_BODY25[JOINT_NAMES[j]] is None


@pytest.mark.parametrize("joint,src", sorted(SINGLE.items()))
def test_every_mapped_index(joint, src):
    lm = distinct_landmarks()
    kp = mediapipe_to_body25(lm, 640, 480)
    np.testing.assert_allclose(kp[joint], [lm[src, 0] * 640, lm[src, 1] * 480, lm[src, 2]], rtol=1e-6)


def test_left_and_right_are_the_subjects_own():
    # a person facing the camera: their right side (MediaPipe 12, 14, 16, 24...) is on the image's left
    lm = distinct_landmarks()
    lm[[12, 14, 16, 24, 26, 28], 0] = 0.2
    lm[[11, 13, 15, 23, 25, 27], 0] = 0.8
    kp = mediapipe_to_body25(lm, 100, 100)
    for name in ("RShoulder", "RElbow", "RWrist", "RHip", "RKnee", "RAnkle"):
        assert kp[JOINT_INDEX[name], 0] == pytest.approx(20.0)
    for name in ("LShoulder", "LElbow", "LWrist", "LHip", "LKnee", "LAnkle"):
        assert kp[JOINT_INDEX[name], 0] == pytest.approx(80.0)
    assert kp[JOINT_INDEX["REye"], 0] == pytest.approx(lm[5, 0] * 100)   # MediaPipe 5 = right eye
    assert kp[JOINT_INDEX["LEar"], 0] == pytest.approx(lm[7, 0] * 100)   # MediaPipe 7 = left ear


@pytest.mark.parametrize("joint,pair", sorted(MIDPOINTS.items()))
def test_midpoints_average_position_and_take_min_confidence(joint, pair):
    lm = distinct_landmarks()
    a, b = pair
    lm[a] = (0.2, 0.4, 0.9)
    lm[b] = (0.6, 0.8, 0.3)
    kp = mediapipe_to_body25(lm, 200, 100)
    np.testing.assert_allclose(kp[joint], [80.0, 60.0, 0.3], rtol=1e-6)


def test_small_toes_are_missing():
    kp = mediapipe_to_body25(distinct_landmarks(), 640, 480)
    for j in MISSING:
        assert kp[j].tolist() == [0.0, 0.0, 0.0]
    assert (kp[[j for j in range(25) if j not in MISSING], 2] > 0).all()


def test_confidence_below_threshold_is_zeroed():
    lm = distinct_landmarks()
    lm[0, 2] = 0.09    # nose just below 0.1
    lm[16, 2] = 0.1    # right wrist exactly at the threshold stays
    lm[11, 2] = 0.05   # left shoulder: also pulls the neck midpoint below threshold
    kp = mediapipe_to_body25(lm, 640, 480)
    assert kp[0].tolist() == [0.0, 0.0, 0.0]
    assert kp[4, 2] == pytest.approx(0.1)
    assert kp[5].tolist() == [0.0, 0.0, 0.0]
    assert kp[1].tolist() == [0.0, 0.0, 0.0]


def test_joints_outside_the_image_are_missing():
    lm = distinct_landmarks()
    lm[0, 1] = -0.2      # nose above the frame
    lm[16, 0] = 1.3      # right wrist right of it
    kp = mediapipe_to_body25(lm, 640, 480)
    assert kp[0].tolist() == [0.0, 0.0, 0.0] and kp[4].tolist() == [0.0, 0.0, 0.0]


def test_bad_input_shape_and_size():
    with pytest.raises(ValueError, match=r"\(33, 3\)"):
        mediapipe_to_body25(np.zeros((25, 3)), 10, 10)
    with pytest.raises(ValueError, match="positive"):
        mediapipe_to_body25(distinct_landmarks(), 0, 10)


@pytest.mark.parametrize("frame,expected", [
    ((640, 480), (0, 64, 640, 352)),       # 4:3 webcam: cut top and bottom
    ((1920, 1080), (0, 12, 1920, 1056)),   # 16:9 is a little wider than 320:176
    ((720, 1280), (0, 442, 720, 396)),     # portrait phone
    ((1000, 176), (340, 0, 320, 176)),     # very wide: cut the sides
    ((320, 176), (0, 0, 320, 176)),        # the reference itself: unchanged
])
def test_center_crop_box_matches_reference_aspect(frame, expected):
    box = center_crop_box(frame, REFERENCE_SIZE)
    assert (box.x0, box.y0, box.width, box.height) == expected
    assert box.width / box.height == pytest.approx(320 / 176, rel=0.01)


def test_framing_then_scaling_maps_crop_pixels_to_reference_uniformly():
    box = center_crop_box((640, 480), REFERENCE_SIZE)
    image = np.zeros((480, 640, 3), np.uint8)
    image[box.y0, box.x0] = 255
    crop = crop_frame(image, box)
    assert crop.shape == (352, 640, 3) and crop[0, 0, 0] == 255 and crop.flags["C_CONTIGUOUS"]
    lm = distinct_landmarks()
    kp_crop = mediapipe_to_body25(lm, *box.size)
    kp_ref = rescale_keypoints(kp_crop, box.size, DEFAULT)
    np.testing.assert_allclose(kp_ref[0, :2], [lm[0, 0] * 320, lm[0, 1] * 176], rtol=1e-5)
    sx, sy = 320 / box.width, 176 / box.height
    assert sx == pytest.approx(sy, rel=0.01)   # no squashing once framed
    kp_frame = crop_to_frame(kp_crop, box)
    np.testing.assert_allclose(kp_frame[0, :2], [lm[0, 0] * 640, lm[0, 1] * 352 + 64], rtol=1e-5)
    assert kp_frame[20].tolist() == [0.0, 0.0, 0.0]   # missing joints stay missing in frame pixels
