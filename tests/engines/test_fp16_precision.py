"""FP16 via ModelOpt AutoCast: the TensorRT 11 reduced-precision step, run on CPU here."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from conftest import random_clips
from mgr.engines.backends import load_backend
from mgr.engines.onnx_meta import read_metadata
from mgr.engines.precision import check_precision


def test_fp16_graphs_hold_half_weights_and_keep_float32_io(fp16_set):
    for path in fp16_set.files():
        model = onnx.load(os.fspath(path))
        onnx.checker.check_model(model)
        types = {i.data_type for i in model.graph.initializer}
        assert TensorProto.FLOAT16 in types
        assert all(i.type.tensor_type.elem_type == TensorProto.FLOAT for i in model.graph.input)
        assert all(o.type.tensor_type.elem_type == TensorProto.FLOAT for o in model.graph.output)
        meta, info = read_metadata(path)
        assert info.precision == "fp16" and meta.modality == "fusion"
        assert info.graphs == fp16_set.names()


def test_fp16_logits_close_to_fp32_in_onnxruntime_cpu(fp16_set, ort_backends):
    rgb, skel = random_clips(2, seed=3)
    fp32 = ort_backends["fusion"].predict(rgb, skel)
    fp16_backend = load_backend(fp16_set.clip)
    fp16 = fp16_backend.predict(rgb, skel)
    assert fp16_backend.precision == "fp16" and fp16.dtype == np.float32
    # FP16 has ~3 decimal digits; we measured <= 0.004 on logits up to 9
    torch.testing.assert_close(fp16, fp32, atol=2e-2, rtol=1e-2)
    assert (fp16.argmax(1) == fp32.argmax(1)).all()


def test_unknown_precision_names_the_valid_ones():
    with pytest.raises(ValueError, match="fp32, fp16, int8"):
        check_precision("bf16")
