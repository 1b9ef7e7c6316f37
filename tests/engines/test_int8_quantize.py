"""INT8 static quantization (QDQ, per-channel) and its calibration data paths."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import random_clips
from mgr.engines.artifacts import TensorSpec
from mgr.engines.backends import load_backend
from mgr.engines.onnx_meta import read_metadata
from mgr.engines.quantize import QuantConfig, arrays_calibration, calibration_feeds, npz_calibration

ENC_IN = (TensorSpec("frames", ("batch", 3, 224, 224)),)
CLIP_IN = (TensorSpec("rgb", ("batch", 4, 3, 224, 224)), TensorSpec("skeleton", ("batch", 3, 4, 25)))


def _ops(path):
    return [n.op_type for n in onnx.load(os.fspath(path)).graph.node]


def test_int8_set_quantizes_encoder_and_clip_graph_only(int8_set):
    assert _ops(int8_set.encoder).count("QuantizeLinear") > 10
    assert _ops(int8_set.clip).count("QuantizeLinear") > 10
    assert "QuantizeLinear" not in _ops(int8_set.head)
    assert [read_metadata(p)[1].precision for p in (int8_set.encoder, int8_set.head, int8_set.clip)] == \
        ["int8", "fp32", "int8"]
    onnx.checker.check_model(onnx.load(os.fspath(int8_set.encoder)))


def test_weights_are_quantized_per_channel(int8_set):
    model = onnx.load(os.fspath(int8_set.encoder))
    inits = {i.name: i for i in model.graph.initializer}
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    dq_weight_scales = [numpy_helper.to_array(inits[n.input[1]]) for n in model.graph.node
                        if n.op_type == "DequantizeLinear" and n.output[0] in conv_weights]
    assert dq_weight_scales and all(s.ndim == 1 and s.size > 1 for s in dq_weight_scales)


def test_int8_logits_stay_close_to_fp32(int8_set, ort_backends):
    rgb, skel = random_clips(4, seed=7)
    fp32, int8 = ort_backends["fusion"].predict(rgb, skel), load_backend(int8_set.clip).predict(rgb, skel)
    assert int8.shape == fp32.shape and np.isfinite(int8).all()
    # 8-bit activations: error well under the logit spread, and the same top-1
    assert np.abs(int8 - fp32).max() < 0.1 * np.abs(fp32).max()
    assert (int8.argmax(1) == fp32.argmax(1)).all()


def test_encoder_feeds_flatten_clips_to_frames_and_stop_at_max_samples():
    rgb, skel = random_clips(5)
    feeds = list(calibration_feeds("encoder", ENC_IN, arrays_calibration(rgb, skel, batch=2), max_samples=7))
    sizes = [f["frames"].shape for f in feeds]
    assert sizes == [(7, 3, 224, 224)]   # first batch: 2 clips = 8 frames, capped at 7
    np.testing.assert_array_equal(feeds[0]["frames"][4], rgb[1, 0])


def test_clip_feeds_and_fixed_batch_one_graphs():
    rgb, skel = random_clips(3)
    feeds = list(calibration_feeds("clip", CLIP_IN, arrays_calibration(rgb, skel, batch=2), max_samples=10))
    assert [f["rgb"].shape[0] for f in feeds] == [2, 1] and set(feeds[0]) == {"rgb", "skeleton"}
    fixed = (TensorSpec("skeleton", (1, 3, 4, 25)),)
    feeds = list(calibration_feeds("head", fixed, arrays_calibration(None, skel, batch=3), max_samples=10))
    assert [f["skeleton"].shape for f in feeds] == [(1, 3, 4, 25)] * 3


def test_calibration_errors_are_clear():
    _, skel = random_clips(2, rgb=False)
    with pytest.raises(ValueError, match="needs RGB clips"):
        list(calibration_feeds("encoder", ENC_IN, arrays_calibration(None, skel), 4))
    with pytest.raises(ValueError, match="empty"):
        list(calibration_feeds("clip", CLIP_IN, lambda: iter(()), 4))
    with pytest.raises(ValueError, match="empty"):
        arrays_calibration(None, None)


@pytest.mark.parametrize("kwargs, words", [({"target": "gpu"}, "cpu, tensorrt"),
                                           ({"calibrate_method": "avg"}, "minmax, entropy, percentile"),
                                           ({"max_samples": 0}, ">= 1")])
def test_quant_config_names_valid_choices(kwargs, words):
    with pytest.raises(ValueError, match=words):
        QuantConfig(**kwargs)


def test_npz_calibration_round_trip_and_bad_files(tmp_path):
    rgb, skel = random_clips(3)
    np.savez(tmp_path / "c.npz", rgb=rgb, skeleton=skel)
    batches = list(npz_calibration(tmp_path / "c.npz", batch=2)())
    assert [b[0].shape[0] for b in batches] == [2, 1]
    np.testing.assert_array_equal(batches[1][1], skel[2:])
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="neither 'rgb' nor 'skeleton'"):
        npz_calibration(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        npz_calibration(tmp_path / "junk.npz")
