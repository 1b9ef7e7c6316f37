"""The one artifact metadata schema: round trip, validation, the version-1 migration."""
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mgr.train.metadata import FORMAT_VERSION, ArtifactMetadata, MetadataError, Preprocessing
from mgr.train.preprocess import DEFAULT, preprocess_skeleton

V1 = Path(__file__).resolve().parents[1] / "data" / "v1"   # made by mgr 0.1.0 (format 1), before the schema


def _meta(**prep) -> ArtifactMetadata:
    return ArtifactMetadata(modality="skeleton", class_names=tuple(f"c{i}" for i in range(32)),
                            preprocessing=replace(DEFAULT, **prep), model_config={"num_frames": 4},
                            train_config={"seed": 3}, metrics={"val_top1": 0.5}, clip_seconds=1.5)


def test_round_trip_through_json_is_exact():
    meta = _meta(resize_short=288, image_size=256, conf_threshold=0.2)
    d = json.loads(json.dumps(meta.to_dict()))
    assert d["format_version"] == FORMAT_VERSION == 2
    assert set(d["preprocessing"]) == {"num_frames", "image_size", "resize_short", "mean", "std", "reference_size",
                                       "conf_threshold", "keypoint_stats", "train_crop_scale", "train_crop_ratio"}
    assert ArtifactMetadata.from_dict(d) == meta
    assert "num_frames" not in d and "reference_size" not in d       # one place for each number


@pytest.mark.parametrize("edit, key", [
    (lambda p: p.pop("image_size"), "lacks image_size"),
    (lambda p: p.update(mean=[0.5, 0.5]), "preprocessing.mean must be a list of 3 numbers"),
    (lambda p: p.update(std=[0.2, 0.0, 0.2]), "preprocessing.std must be positive"),
    (lambda p: p.update(num_frames="4"), "preprocessing.num_frames must be a positive whole number"),
    (lambda p: p.update(conf_threshold=2.0), "conf_threshold 2.0 is not in"),
    (lambda p: p.update(keypoint_stats={"mean": [1, 2]}), "preprocessing.keypoint_stats must be an object"),
    (lambda p: p.update(resize_short=100), "resize_short 100 is smaller than image_size"),
    (lambda p: p.update(colour="bgr"), "unknown keys colour"),
])
def test_a_malformed_preprocessing_section_names_the_key(edit, key):
    d = _meta().to_dict()
    edit(d["preprocessing"])
    with pytest.raises(MetadataError, match=key) as err:
        ArtifactMetadata.from_dict(d, "model.onnx")
    assert str(err.value).startswith("model.onnx: ")


def test_metadata_that_is_not_ours_or_too_new_is_refused():
    with pytest.raises(MetadataError, match="carries no mgr metadata"):
        ArtifactMetadata.from_dict({"format": "other"})
    with pytest.raises(MetadataError, match="newer than this mgr"):
        ArtifactMetadata.from_dict({**_meta().to_dict(), "format_version": FORMAT_VERSION + 1})
    with pytest.raises(MetadataError, match="modality 'depth'"):
        ArtifactMetadata.from_dict({**_meta().to_dict(), "modality": "depth"})
    with pytest.raises(MetadataError, match="model_config.num_frames 8 differs"):
        ArtifactMetadata.from_dict({**_meta().to_dict(), "model_config": {"num_frames": 8}})


def test_version_1_dict_migrates_with_a_warning_naming_the_assumed_values(caplog):
    v1 = {"format": "mgr-checkpoint", "format_version": 1, "modality": "skeleton", "num_frames": 4,
          "class_names": ["a", "b"], "reference_size": [320, 176],
          "keypoint_stats": {"mean": [150.0, 90.0], "std": [40.0, 30.0]}, "model_config": {"num_frames": 4},
          "train_config": {}, "metrics": {}, "clip_seconds": None}
    with caplog.at_level(logging.WARNING):
        meta = ArtifactMetadata.from_dict(v1, "old.pt")
    assert meta.format_version == 2 and meta.keypoint_stats.mean == (150.0, 90.0)
    text = caplog.text
    assert "old.pt: format version 1" in text
    for assumed in ("image_size=224", "resize_short=256", "mean=[0.485, 0.456, 0.406]", "conf_threshold=0.1"):
        assert assumed in text
    with pytest.raises(MetadataError, match="version-1 metadata lacks"):
        ArtifactMetadata.from_dict({k: v for k, v in v1.items() if k != "keypoint_stats"}, "old.pt")


@pytest.mark.parametrize("name", ["skeleton-v1.pt", "skeleton-v1.onnx"])
def test_version_1_artifacts_of_the_last_release_still_load_and_give_the_same_logits(name, caplog):
    from mgr.engines.backends import load_backend
    expected = json.loads((V1 / "expected_logits.json").read_text())
    with caplog.at_level(logging.WARNING):
        backend = load_backend(V1 / name)
    assert "format version 1" in caplog.text and "image_size=224" in caplog.text
    meta = backend.metadata
    assert meta.format_version == 2 and meta.clip_seconds == 1.2
    assert meta.keypoint_stats.mean == (150.0, 90.0) and meta.reference_size == (320, 176)
    kp = np.asarray(expected["keypoints_ref"], dtype=np.float32)
    x = preprocess_skeleton(kp, meta.preprocessing)[None]
    np.testing.assert_allclose(np.asarray(backend.classify(None, x))[0], expected[name], atol=1e-5)


def test_default_preprocessing_is_the_reference_report():
    p = Preprocessing()
    assert (p.num_frames, p.image_size, p.resize_short, p.reference_size, p.conf_threshold) == (4, 224, 256, (320, 176), 0.1)
