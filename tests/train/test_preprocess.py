from dataclasses import replace

import numpy as np
import pytest

from mgr.train.preprocess import (DEFAULT, KeypointStats, compute_keypoint_stats,
                                  mask_keypoints, preprocess_rgb_frame, preprocess_skeleton, rescale_keypoints,
                                  resize_short_side, sample_frame_indices)


def test_sampling_longer_clip_eval_is_even_and_train_sorted_random():
    assert sample_frame_indices(10, 4).tolist() == [0, 3, 6, 9]
    rng = np.random.default_rng(0)
    draws = {tuple(sample_frame_indices(10, 4, train=True, rng=rng)) for _ in range(20)}
    assert len(draws) > 1
    for d in draws:
        assert list(d) == sorted(d) and len(set(d)) == 4 and max(d) < 10


def test_sampling_short_clip_repeats_cyclically():
    assert sample_frame_indices(1, 4).tolist() == [0, 0, 0, 0]
    assert sample_frame_indices(3, 4).tolist() == [0, 1, 2, 0]
    assert sample_frame_indices(2, 4, train=True).tolist() == [0, 1, 0, 1]
    with pytest.raises(ValueError, match="at least one frame"):
        sample_frame_indices(0, 4)


def test_rgb_eval_resizes_short_side_then_center_crops():
    img = np.zeros((180, 320, 3), np.uint8)
    img[:, 150:170] = 255  # a white vertical bar in the middle
    assert resize_short_side(img, DEFAULT.resize_short).shape == (256, 455, 3)
    x = preprocess_rgb_frame(img, DEFAULT)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    mean, std = np.array(DEFAULT.mean), np.array(DEFAULT.std)
    assert DEFAULT.mean == (0.485, 0.456, 0.406) and DEFAULT.std == (0.229, 0.224, 0.225)   # ImageNet
    white = (1 - mean) / std
    black = -mean / std
    np.testing.assert_allclose(x[:, 112, 112], white, atol=1e-5)  # bar survives the center crop
    np.testing.assert_allclose(x[:, 112, 0], black, atol=1e-5)


def test_rgb_train_crop_is_random_but_valid():
    img = (np.random.default_rng(0).random((180, 320, 3)) * 255).astype(np.uint8)
    rng = np.random.default_rng(1)
    a, b = preprocess_rgb_frame(img, DEFAULT, True, rng), preprocess_rgb_frame(img, DEFAULT, True, rng)
    assert a.shape == b.shape == (3, 224, 224) and not np.allclose(a, b)


def test_keypoints_masked_rescaled_and_normalised():
    kp = np.zeros((4, 25, 3), np.float32)
    kp[:, :, :] = (640.0, 360.0, 0.9)           # center of a 1280x720 frame
    kp[0, 3] = (100, 100, 0.05)                  # below threshold -> missing
    kp[1, 4] = (np.nan, 5, 0.9)                  # NaN -> missing
    kp[2] = 0                                     # all-missing frame
    ref = rescale_keypoints(kp, (1280, 720), DEFAULT)
    np.testing.assert_allclose(ref[3, 0], (160, 88, 0.9), rtol=1e-6)
    assert (ref[0, 3] == 0).all() and (ref[1, 4] == 0).all()
    stats = KeypointStats((160.0, 88.0), (10.0, 20.0))
    x = preprocess_skeleton(ref, replace(DEFAULT, keypoint_stats=stats))
    assert x.shape == (3, 4, 25)
    np.testing.assert_allclose(x[:, 3, 0], (0, 0, 0.9), atol=1e-6)  # normalised to the mean
    assert (x[:, 0, 3] == 0).all() and (x[:, 1, 4] == 0).all() and (x[:, 2] == 0).all()
    assert mask_keypoints(kp, DEFAULT.conf_threshold)[0, 3].sum() == 0


def test_keypoint_stats_use_valid_joints_only():
    a = np.zeros((2, 25, 3), np.float32)
    a[:, :2] = [[10, 20, 1.0], [30, 40, 1.0]]
    s = compute_keypoint_stats([a], DEFAULT.conf_threshold)
    assert s.mean == pytest.approx((20, 30)) and s.std == pytest.approx((10, 10))
    assert KeypointStats.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="no valid joints"):
        compute_keypoint_stats([np.zeros((4, 25, 3))], DEFAULT.conf_threshold)
    with pytest.raises(ValueError, match="25, 3"):
        mask_keypoints(np.zeros((4, 18, 3)), DEFAULT.conf_threshold)
