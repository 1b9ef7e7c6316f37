"""ONNX export: checker, metadata, parity with torch eager, options and failure modes."""
from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import MODALITIES, random_clips, write_checkpoint
from mgr.engines.artifacts import ArtifactError
from mgr.engines.backends import load_backend
from mgr.engines.export import OnnxExportConfig, export_checkpoint
from mgr.engines.onnx_meta import PREFIX, read_metadata
from mgr.train.checkpoint import CheckpointError, read_checkpoint

# float32 ONNX vs torch eager on the same CPU: kernels differ in summation order only.
# Measured max abs logit difference ~1e-6 on logits of magnitude ~1-10.
ATOL, RTOL = 1e-4, 1e-4


@pytest.mark.parametrize("modality", MODALITIES)
def test_every_graph_passes_checker_and_carries_checkpoint_metadata(onnx_sets, checkpoints, modality):
    ckpt_meta = read_checkpoint(checkpoints[modality])["metadata"]
    files = onnx_sets[modality].files()
    assert len(files) == (2 if modality == "skeleton" else 3)
    for path in files:
        onnx.checker.check_model(onnx.load(os.fspath(path)))
        meta, info = read_metadata(path)
        assert meta == ckpt_meta
        assert info.graphs == onnx_sets[modality].names()
        assert info.precision == "fp32"


def test_graph_io_names_and_shapes_are_declared(onnx_sets):
    paths = onnx_sets["fusion"]
    _, enc = read_metadata(paths.encoder)
    _, head = read_metadata(paths.head)
    _, clip = read_metadata(paths.clip)
    assert [(t.name, t.shape) for t in enc.inputs] == [("frames", ("batch", 3, 224, 224))]
    assert [(t.name, t.shape) for t in head.inputs] == [("features", ("batch", 4, 512)), ("skeleton", ("batch", 3, 4, 25))]
    assert [t.name for t in clip.inputs] == ["rgb", "skeleton"] and clip.outputs[0].shape == ("batch", 32)
    # the declaration matches the graph itself
    graph_inputs = [i.name for i in onnx.load(os.fspath(paths.head)).graph.input]
    assert graph_inputs == ["features", "skeleton"]


def test_skeleton_model_has_no_frame_encoder(onnx_sets):
    assert onnx_sets["skeleton"].encoder is None
    assert not onnx_sets["skeleton"].clip.with_name("skeleton.encoder.onnx").exists()


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("modality", MODALITIES)
def test_onnxruntime_matches_torch_eager(onnx_sets, torch_backends, ort_backends, modality, batch):
    ref, test = torch_backends[modality], ort_backends[modality]
    rgb, skel = random_clips(batch, seed=batch, rgb=ref.uses_rgb, skeleton=ref.uses_skeleton)
    expected = ref.predict(rgb, skel)
    torch.testing.assert_close(test.predict(rgb, skel), expected, atol=ATOL, rtol=RTOL)
    if batch != 1:
        return
    # the whole-clip graph and the frame encoder alone agree too
    session = ort.InferenceSession(os.fspath(onnx_sets[modality].clip), providers=["CPUExecutionProvider"])
    feeds = {k: v for k, v in (("rgb", rgb), ("skeleton", skel)) if v is not None}
    torch.testing.assert_close(session.run(None, feeds)[0], expected, atol=ATOL, rtol=RTOL)
    if ref.uses_rgb:
        frames = rgb.reshape(-1, 3, 224, 224)
        torch.testing.assert_close(test.encode_frames(frames), ref.encode_frames(frames), atol=ATOL, rtol=RTOL)


def test_fixed_batch_export_declares_batch_one_and_serves_larger_batches(tmp_path, checkpoints, ort_backends):
    paths = export_checkpoint(checkpoints["skeleton"], tmp_path / "b1.onnx", OnnxExportConfig(batch="1"))
    shape = onnx.load(os.fspath(paths.head)).graph.input[0].type.tensor_type.shape
    assert shape.dim[0].dim_value == 1
    _, skel = random_clips(3, rgb=False)
    fixed, dynamic = load_backend(paths.clip), ort_backends["skeleton"]
    torch.testing.assert_close(fixed.predict(None, skel), dynamic.predict(None, skel), atol=ATOL, rtol=RTOL)


def test_opset_option_sets_the_graph_opset(tmp_path, checkpoints):
    paths = export_checkpoint(checkpoints["skeleton"], tmp_path / "o.onnx", OnnxExportConfig(opset=20))
    versions = {o.domain: o.version for o in onnx.load(os.fspath(paths.head)).opset_import}
    assert versions[""] == 20


@pytest.mark.parametrize("kwargs, words", [({"opset": 9}, "18"), ({"batch": "4"}, "dynamic")])
def test_bad_export_options_name_the_valid_choices(kwargs, words):
    with pytest.raises(ValueError, match=words):
        OnnxExportConfig(**kwargs)


def test_output_in_missing_folder_is_an_error(tmp_path, checkpoints):
    with pytest.raises(ValueError, match="does not exist"):
        export_checkpoint(checkpoints["skeleton"], tmp_path / "nope" / "m.onnx")
    assert not (tmp_path / "nope").exists()


def test_interrupted_export_leaves_no_file(tmp_path, checkpoints, monkeypatch):
    def half_write(model, path, *a, **k):
        with open(path, "wb") as fh:
            fh.write(b"\x08\x07partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx, "save_model", half_write)
    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(checkpoints["skeleton"], tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_of_a_newer_format_version_is_refused(tmp_path):
    path = write_checkpoint(tmp_path / "future.pt", "skeleton", format_version=99)
    with pytest.raises(CheckpointError, match="newer"):
        export_checkpoint(path, tmp_path / "m.onnx")


def _rewrite_props(src, dst, edit):
    model = onnx.load(os.fspath(src))
    props = {p.key: p.value for p in model.metadata_props}
    del model.metadata_props[:]
    for k, v in edit(props).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save_model(model, os.fspath(dst))


def test_onnx_without_our_metadata_is_a_clear_error(tmp_path, onnx_sets):
    bare = tmp_path / "bare.head.onnx"
    _rewrite_props(onnx_sets["skeleton"].head, bare, lambda p: {k: v for k, v in p.items() if not k.startswith(PREFIX)})
    with pytest.raises(ArtifactError, match="without mgr metadata.*mgr export-onnx"):
        load_backend(bare)


def test_onnx_of_a_newer_format_version_is_refused(tmp_path, onnx_sets):
    future = tmp_path / "future.onnx"
    _rewrite_props(onnx_sets["skeleton"].clip, future, lambda p: {**p, PREFIX + "format_version": "99"})
    with pytest.raises(ArtifactError, match="newer"):
        load_backend(future)


def test_metadata_is_json_per_key(onnx_sets):
    props = {p.key: p.value for p in onnx.load(os.fspath(onnx_sets["rgb"].encoder)).metadata_props}
    import json
    assert json.loads(props["mgr.modality"]) == "rgb"
    assert json.loads(props["mgr.graph"]) == "encoder"
    assert len(json.loads(props["mgr.class_names"])) == 32
    prep = json.loads(props["mgr.preprocessing"])              # every preprocessing number, as one JSON object
    assert np.isfinite(prep["keypoint_stats"]["std"]).all()
    assert (prep["image_size"], prep["resize_short"], prep["num_frames"]) == (224, 256, 4)
    assert "mgr.keypoint_stats" not in props and "mgr.num_frames" not in props
