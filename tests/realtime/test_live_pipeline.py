"""The inference step with a fake backend and fake pose: sampling, caching, statuses, smoothing."""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

import mgr.realtime
import mgr.train.preprocess as training_preprocess
from mgr.realtime import pipeline
from mgr.realtime.pipeline import (DEFAULT_WINDOW_S, LiveConfig, Recognizer, Smoother, resolve_window,
                                   select_window, softmax, target_times, top_k)
from mgr.realtime.sources import Frame
from rt_helpers import FakeBackend, FakePose


def frames(n, fps=10.0, size=(640, 480)):
    rng = np.random.default_rng(1)
    for i in range(n):
        yield Frame(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), i, i * 1000.0 / fps, 0.0)


def run(recognizer, n, fps=10.0):
    return [recognizer.step(f) for f in frames(n, fps)]


# ----------------------------------------------------------------------------- pure parts
def test_window_default_comes_from_metadata_else_the_imigue_median():
    assert resolve_window(None, None) == DEFAULT_WINDOW_S == 1.6
    assert resolve_window(None, 2.4) == 2.4
    assert resolve_window(0.8, 2.4) == 0.8
    with pytest.raises(ValueError, match="positive"):
        resolve_window(0.0, None)


def test_targets_span_the_window_evenly_like_eval_sampling():
    np.testing.assert_allclose(target_times(10_000, 1.5, 4), [8500, 9000, 9500, 10_000])
    # the same positions sample_frame_indices picks in a 16-frame clip: 0, 5, 10, 15
    times = np.arange(16) * 100.0
    assert select_window(times, 1500, 1.5, 4) == training_preprocess.sample_frame_indices(16, 4).tolist()


def test_select_window_warms_up_until_the_window_is_covered():
    assert select_window([0, 100, 200], 200, 1.6, 4) is None              # fewer than 4 frames
    assert select_window([0, 100, 200, 300], 300, 1.6, 4) is None         # only 0.3 s of history
    times = list(np.arange(0, 1700, 100.0))
    assert select_window(times, 1600, 1.6, 4) is not None
    gap = [t for t in times if not 400 <= t <= 1300]                     # person gone for 1 s
    assert select_window(gap, 1600, 1.6, 4) is None


def test_smoother_softmax_topk():
    s = Smoother(2)
    s(np.array([1.0, 0.0]))
    np.testing.assert_allclose(s(np.array([0.0, 1.0])), [0.5, 0.5])
    np.testing.assert_allclose(s(np.array([0.0, 1.0])), [0.0, 1.0])     # window of 2
    s.reset()
    np.testing.assert_allclose(s(np.array([1.0, 0.0])), [1.0, 0.0])
    with pytest.raises(ValueError, match="at least 1"):
        Smoother(0)
    p = softmax(np.array([[1.0, 2.0, 3.0]]))
    assert p.sum() == pytest.approx(1.0) and p.argmax() == 2
    assert top_k(np.array([0.1, 0.6, 0.3]), ["a", "b", "c"], 2) == (("b", 0.6), ("c", 0.3))


# ----------------------------------------------------------------------------- the step
def test_warming_up_then_predictions_with_top5():
    rec = Recognizer(FakeBackend(), FakePose(), LiveConfig(window_s=0.6, threshold=0.0))
    preds = run(rec, 12)
    statuses = [p.status for p in preds]
    # 10 fps, 0.6 s window: frames 0-4 cannot cover it; from frame 5 each target has a frame
    # within half the 0.2 s spacing
    assert statuses[:5] == ["warming up"] * 5 and set(statuses[5:]) == {"ok"}
    assert all(len(p.top) == 5 for p in preds[5:]) and all(p.top == () for p in preds[:5])
    probs = [pr for _, pr in preds[-1].top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-9
    assert preds[-1].keypoints.shape == (25, 3)


def test_each_frame_is_encoded_once_and_the_head_runs_on_cached_features():
    backend = FakeBackend()
    rec = Recognizer(backend, FakePose(), LiveConfig(window_s=0.6))
    run(rec, 20)
    assert backend.encoded == 20 and backend.encode_calls == 20 and rec.encoded_frames == 20
    feats, skel = backend.classify_inputs[-1]
    assert feats.shape == (1, 4, 512) and skel.shape == (1, 3, 4, 25)


def test_naive_mode_reencodes_and_gives_the_same_probabilities():
    cached_b, naive_b = FakeBackend(), FakeBackend()
    cached = run(Recognizer(cached_b, FakePose(), LiveConfig(window_s=0.6)), 12)
    naive = run(Recognizer(naive_b, FakePose(), LiveConfig(window_s=0.6, cache_features=False)), 12)
    assert naive_b.encoded == 4 * 7 and cached_b.encoded == 12      # 7 steps past warm-up
    for a, b in zip(cached, naive):
        assert a.status == b.status
        np.testing.assert_allclose([p for _, p in a.top], [p for _, p in b.top], rtol=1e-5)


def test_no_person_clears_labels_and_needs_a_new_warm_up():
    pose = FakePose(present=lambda i: not 10 <= i < 18)
    rec = Recognizer(FakeBackend(), pose, LiveConfig(window_s=0.6, threshold=0.0))
    preds = run(rec, 24)
    assert preds[9].status == "ok"
    assert all(p.status == "no person" and p.top == () and p.keypoints is None for p in preds[10:18])
    assert preds[18].status == "warming up"          # history has a gap: no stale frames used
    assert preds[-1].status == "ok"


def test_threshold_gives_uncertain():
    rec = Recognizer(FakeBackend(), FakePose(), LiveConfig(window_s=0.6, threshold=0.99))
    assert run(rec, 10)[-1].status == "uncertain"


def test_skeleton_only_model_never_encodes():
    backend = FakeBackend("skeleton")
    rec = Recognizer(backend, FakePose(), LiveConfig(window_s=0.6))
    assert run(rec, 10)[-1].status in ("ok", "uncertain") and backend.encoded == 0


def test_reset_forgets_history_smoothing_and_pose():
    pose = FakePose()
    rec = Recognizer(FakeBackend(), pose, LiveConfig(window_s=0.6))
    run(rec, 10)
    rec.reset()
    assert pose.resets == 1 and rec.history.times == []
    assert rec.step(next(frames(1))).status == "warming up"


def test_live_step_uses_the_training_preprocessing_not_a_copy(monkeypatch):
    # the very same function objects, imported from mgr.train.preprocess ...
    for name in ("preprocess_rgb_frame", "preprocess_skeleton", "rescale_keypoints"):
        assert getattr(pipeline, name) is getattr(training_preprocess, name)
    # ... called by the step (spied), and the model sees exactly what training would produce
    calls = {"rgb": 0, "skel": 0}

    def spy_rgb(image, *a, **k):
        calls["rgb"] += 1
        return training_preprocess.preprocess_rgb_frame(image, *a, **k)

    def spy_skel(kp, prep):
        calls["skel"] += 1
        assert prep is rec.backend.metadata.preprocessing            # the artifact's numbers, not defaults
        return training_preprocess.preprocess_skeleton(kp, prep)
    monkeypatch.setattr(pipeline, "preprocess_rgb_frame", spy_rgb)
    monkeypatch.setattr(pipeline, "preprocess_skeleton", spy_skel)
    rec = Recognizer(FakeBackend(), FakePose(), LiveConfig(window_s=0.6, cache_features=False))
    frame = list(frames(7))
    for f in frame:
        rec.step(f)
    assert calls["rgb"] == 7 and calls["skel"] == 2                    # steps at frames 5 and 6
    crop = frame[-1].image[64:416, :, ::-1]                           # framing crop, BGR -> RGB
    np.testing.assert_array_equal(rec.history.rgb[-1], training_preprocess.preprocess_rgb_frame(np.ascontiguousarray(crop),
                                                                                          rec.backend.metadata.preprocessing))


def test_no_second_copy_of_preprocessing_in_realtime():
    src = "\n".join(p.read_text() for p in Path(mgr.realtime.__file__).parent.glob("*.py"))
    for needle in ("0.485", "0.229", "IMAGENET_MEAN", "IMAGENET_STD", "RESIZE_SHORT"):
        assert needle not in src, f"realtime/ holds its own preprocessing ({needle})"
    assert "preprocess_rgb_frame" in inspect.getsource(pipeline)


def test_the_step_takes_every_preprocessing_number_from_the_artifact():
    # an artifact trained with other numbers: the live step must follow it, not the module defaults
    from dataclasses import replace
    backend = FakeBackend("fusion")
    prep = replace(backend.metadata.preprocessing, resize_short=180, image_size=160, mean=(0.5, 0.5, 0.5),
                   std=(0.25, 0.25, 0.25), conf_threshold=0.95)
    backend.metadata = replace(backend.metadata, preprocessing=prep)
    rec = Recognizer(backend, FakePose(), LiveConfig(window_s=10.0, cache_features=False))  # history only
    frame = list(frames(7))
    assert {rec.step(f).status for f in frame} == {"warming up"}
    crop = np.ascontiguousarray(frame[-1].image[64:416, :, ::-1])
    assert rec.history.rgb[-1].shape == (3, 160, 160)
    np.testing.assert_array_equal(rec.history.rgb[-1], training_preprocess.preprocess_rgb_frame(crop, prep))
    # FakePose's joints have confidence 0.9 < 0.95: the artifact's threshold masks them all
    assert all((kp == 0).all() for kp in rec.history.skeleton)
