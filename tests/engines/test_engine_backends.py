"""The backend contract: suffix dispatch, metadata, numpy in/out, shape errors."""
from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from conftest import MODALITIES, random_clips
from mgr.engines.artifacts import ArtifactError, artifact_set, base_path
from mgr.engines.backends import MissingRuntimeError, load_backend
from mgr.train.checkpoint import read_checkpoint

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.parametrize("name", ["model.pth", "model.tflite", "model"])
def test_unknown_suffix_names_the_valid_ones(name):
    with pytest.raises(ValueError, match=r"\.pt.*\.onnx.*\.engine"):
        load_backend(name)


@pytest.mark.parametrize("kwargs, words", [({"device": "tpu"}, "unknown device .tpu.; choose cpu or cuda"), ({"threads": 0}, "threads")])
def test_bad_options_are_refused(onnx_sets, kwargs, words):
    with pytest.raises(ValueError, match=words):
        load_backend(onnx_sets["skeleton"].clip, **kwargs)


@pytest.mark.parametrize("modality", MODALITIES)
def test_backends_expose_the_checkpoint_metadata(checkpoints, torch_backends, ort_backends, modality):
    meta = read_checkpoint(checkpoints[modality])["metadata"]
    for backend in (torch_backends[modality], ort_backends[modality]):
        assert backend.metadata == meta
        assert backend.uses_rgb == (modality != "skeleton")
        assert backend.uses_skeleton == (modality != "rgb")


def test_numpy_in_numpy_out(ort_backends, torch_backends):
    rgb, skel = random_clips(2)
    for backend in (ort_backends["fusion"], torch_backends["fusion"]):
        feats = backend.encode_frames(rgb[0])
        assert isinstance(feats, np.ndarray) and feats.dtype == np.float32 and feats.shape == (4, 512)
        logits = backend.classify(feats[None], skel[:1])
        assert logits.dtype == np.float32 and logits.shape == (1, 32) and np.isfinite(logits).all()
        # classify on encoded features is predict
        np.testing.assert_allclose(logits, backend.predict(rgb[:1], skel[:1]), atol=1e-5)


def test_float64_input_is_accepted_as_float32(ort_backends):
    _, skel = random_clips(1, rgb=False)
    out = ort_backends["skeleton"].classify(None, skel.astype(np.float64))
    np.testing.assert_allclose(out, ort_backends["skeleton"].classify(None, skel), atol=1e-6)


@pytest.mark.parametrize("call, message", [
    (lambda b: b.encode_frames(np.zeros((3, 224, 224), np.float32)),
     r"frames: expected shape \(N, 3, 224, 224\), got \(3, 224, 224\)"),
    (lambda b: b.encode_frames(np.zeros((1, 3, 112, 112), np.float32)),
     r"frames: expected shape \(N, 3, 224, 224\), got \(1, 3, 112, 112\)"),
    (lambda b: b.classify(np.zeros((1, 3, 512), np.float32), np.zeros((1, 3, 4, 25), np.float32)),
     r"features: expected shape \(N, 4, 512\), got \(1, 3, 512\)"),
    (lambda b: b.classify(np.zeros((1, 4, 512), np.float32), np.zeros((1, 4, 3, 25), np.float32)),
     r"skeleton: expected shape \(N, 3, 4, 25\), got \(1, 4, 3, 25\)"),
    (lambda b: b.classify(np.zeros((2, 4, 512), np.float32), np.zeros((1, 3, 4, 25), np.float32)),
     "batch differ: 2 vs 1"),
    (lambda b: b.predict(np.zeros((1, 4, 3, 224, 224), np.float32), None), "skeleton: missing"),
    (lambda b: b.predict(np.zeros((0, 4, 3, 224, 224), np.float32), np.zeros((0, 3, 4, 25), np.float32)),
     r"got \(0, 4, 3, 224, 224\)"),
])
@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_wrong_shapes_name_expected_and_actual(torch_backends, ort_backends, runtime, call, message):
    backend = (torch_backends if runtime == "torch" else ort_backends)["fusion"]
    with pytest.raises(ValueError, match=message):
        call(backend)


def test_skeleton_backend_has_no_encoder(ort_backends):
    with pytest.raises(ValueError, match="no RGB stream"):
        ort_backends["skeleton"].encode_frames(np.zeros((1, 3, 224, 224), np.float32))


def test_any_graph_of_a_set_opens_the_set(onnx_sets, ort_backends):
    _, skel = random_clips(2, rgb=False)
    via_head = load_backend(onnx_sets["skeleton"].head)
    np.testing.assert_allclose(via_head.predict(None, skel), ort_backends["skeleton"].predict(None, skel), atol=1e-6)


def test_missing_sibling_graph_is_a_clear_error(tmp_path, onnx_sets):
    for f in onnx_sets["rgb"].files():
        if f != onnx_sets["rgb"].encoder:
            shutil.copy(f, tmp_path / f.name)
    with pytest.raises(ArtifactError, match="encoder graph not found"):
        load_backend(tmp_path / onnx_sets["rgb"].clip.name)


def test_artifact_naming():
    s = artifact_set("out/model.onnx", uses_rgb=True)
    assert [p.name for p in s.files()] == ["model.encoder.onnx", "model.head.onnx", "model.onnx"]
    assert artifact_set("m.engine", uses_rgb=False).encoder is None
    assert base_path("a/model.encoder.onnx").name == "model.onnx"
    assert base_path("a/model.head.engine").name == "model.engine"
    assert base_path("a/my.model.onnx").name == "my.model.onnx"


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed: the missing-runtime path cannot be exercised")
def test_engine_without_tensorrt_says_how_to_install(tmp_path):
    with pytest.raises(MissingRuntimeError, match=r"pip install 'mgr\[trt\]'"):
        load_backend(tmp_path / "model.engine")


def test_onnxruntime_sessions_do_not_spin_and_the_head_runs_on_one_thread(ort_backends):
    # alternating encoder/head sessions with spinning pools halved the streaming step rate
    backend = ort_backends["fusion"]
    for graph in (backend.encoder, backend.head):
        opts = graph.session.get_session_options()
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert backend.encoder.session.get_session_options().intra_op_num_threads == 2
    assert backend.head.session.get_session_options().intra_op_num_threads == 1
