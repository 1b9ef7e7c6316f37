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


# ----------------------------------------------------------------------------- the step's stages, without a model
def test_stage_keys_of_a_step_come_from_step_stages():
    stages = (pipeline.POSE_STAGE, pipeline.ENCODE_STAGE, pipeline.HEAD_STAGE, pipeline.EVENTS_STAGE)
    assert stages == pipeline.STEP_STAGES
    rec = Recognizer(FakeBackend(), FakePose(), LiveConfig(window_s=0.6))
    preds = run(rec, 7)
    assert set(preds[-1].ms) == set(pipeline.STEP_STAGES) and all(v >= 0 for v in preds[-1].ms.values())
    assert set(preds[0].ms) == set(pipeline.STEP_STAGES) - {pipeline.HEAD_STAGE}   # warming up: no head
    rec.close()


def test_frame_crop_is_the_centre_box_in_rgb():
    image = np.zeros((480, 640, 3), np.uint8)
    image[..., 0] = 10                                                      # B
    image[..., 2] = 200                                                     # R
    image[64, 0] = (1, 2, 3)                                                # crop's top-left pixel
    box, crop = pipeline.frame_crop(image, (320, 176))
    assert (box.x0, box.y0, box.size) == (0, 64, (640, 352))
    assert crop.shape == (352, 640, 3) and crop.flags["C_CONTIGUOUS"]
    assert tuple(crop[0, 0]) == (3, 2, 1) and tuple(crop[10, 10]) == (200, 0, 10)   # RGB order
    box, crop = pipeline.frame_crop(np.zeros((480, 400, 3), np.uint8), (320, 176))   # too tall
    assert (box.x0, box.width) == (0, 400) and crop.shape[:2] == (box.height, 400) and box.y0 > 0


def test_run_pose_passes_the_crop_and_times_it():
    seen = []
    kp, ms = pipeline.run_pose(lambda img, t: seen.append((img.shape, t)) or np.ones((25, 3)), np.zeros((4, 6, 3)), 12.5)
    assert seen == [((4, 6, 3), 12.5)] and kp.shape == (25, 3) and ms >= 0
    assert pipeline.run_pose(lambda img, t: None, np.zeros((4, 6, 3)), 0.0)[0] is None


def test_rgb_entry_preprocesses_with_the_artifact_then_encodes_once_or_not_at_all():
    prep = FakeBackend().metadata.preprocessing
    crop = np.random.default_rng(2).integers(0, 255, (176, 320, 3), dtype=np.uint8)
    x = pipeline.rgb_entry(crop, prep)                                      # naive: the input itself
    np.testing.assert_array_equal(x, training_preprocess.preprocess_rgb_frame(crop, prep))
    calls = []

    def encode(batch):
        calls.append(batch.shape)
        return batch.reshape(len(batch), -1)[:, :512]
    feat = pipeline.rgb_entry(crop, prep, encode)
    assert calls == [(1, *x.shape)] and feat.shape == (512,)
    np.testing.assert_array_equal(feat, x.reshape(-1)[:512])


def test_record_frame_rescales_adds_and_picks_or_warms_up():
    prep = FakeBackend().metadata.preprocessing                             # reference (320, 176), T = 4
    hist = pipeline.FrameHistory(0.6)
    kp = np.zeros((25, 3), np.float32)
    kp[1] = (320.0, 88.0, 0.9)
    picks = [pipeline.record_frame(hist, i * 100.0, np.full(2, i), kp, (640, 352), prep, 0.6) for i in range(7)]
    assert picks[:5] == [None] * 5 and picks[5] == [0, 1, 3, 5] and picks[6] == [0, 2, 4, 6]
    np.testing.assert_allclose(hist.skeleton[-1][1], (160.0, 44.0, 0.9), rtol=1e-6)   # halved to the reference
    assert hist.times == [i * 100.0 for i in range(7)] and hist.rgb[3].tolist() == [3, 3]


def test_gather_clip_stacks_the_picked_frames():
    prep = FakeBackend().metadata.preprocessing
    hist = pipeline.FrameHistory(10.0)
    rng = np.random.default_rng(3)
    for i in range(6):
        hist.add(i * 100.0, np.full(512, i, np.float64), rng.uniform(1, 300, (25, 3)).astype(np.float32))
    picks = [0, 2, 4, 5]
    feats, skel = pipeline.gather_clip(hist, picks, True, True, prep)
    assert feats.shape == (1, 4, 512) and feats.dtype == np.float32 and feats[0, :, 0].tolist() == picks
    assert skel.shape == (1, 3, 4, 25)
    np.testing.assert_array_equal(skel[0], training_preprocess.preprocess_skeleton(np.stack([hist.skeleton[i] for i in picks]), prep))
    assert pipeline.gather_clip(hist, picks, False, True, prep)[0] is None
    feats, skel = pipeline.gather_clip(hist, picks, True, False, prep)
    assert skel is None and feats.shape == (1, 4, 512)


def test_clip_probs_is_the_softmax_of_the_backend_logits():
    class Head:
        def classify(self, feats, skel):
            self.got = (feats, skel)
            return np.array([[0.0, 1.0, 2.0]])
    head, f = Head(), np.zeros((1, 4, 512), np.float32)
    p = pipeline.clip_probs(head, f, None)
    assert head.got[0] is f and head.got[1] is None
    np.testing.assert_allclose(p, softmax(np.array([0.0, 1.0, 2.0])))


def test_decide_status_under_and_over_the_threshold():
    probs, names = np.array([0.1, 0.5, 0.4]), ["a", "b", "c"]
    assert pipeline.decide(probs, names, 2, 0.5) == ("ok", (("b", 0.5), ("c", 0.4)))      # at: ok
    assert pipeline.decide(probs, names, 3, 0.51)[0] == "uncertain"
    status, top = pipeline.decide(probs, names, 1, 0.0)
    assert status == "ok" and top == (("b", 0.5),)


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
