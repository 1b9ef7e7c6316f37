import os

import numpy as np
import pytest
import torch

from mgr.train.checkpoint import CheckpointError, build_metadata, load_model, read_checkpoint, save_checkpoint
from mgr.train.data import ClipRecord, scan_dataset
from mgr.train.evaluate import compute_metrics
from mgr.train.model import FusionConfig, MicroGestureNet
from mgr.train.preprocess import DEFAULT
from mgr.train.split import cross_subject_split, load_split, random_split, save_split, select


def test_cross_subject_split_matches_official_counts(data_dir):
    idx = scan_dataset(data_dir)                     # the official label file, 18,498 clips
    assert len(idx.clips) == 18498
    s = cross_subject_split(idx.clips, data_dir / "imigue_cross_subject.json")
    assert len(s["train_all"]) == 13935 and len(s["test"]) == 4563
    assert set(s["train"]) | set(s["val"]) == set(s["train_all"]) and not set(s["val"]) & set(s["test"])
    test_labels = {c.label for c in select(idx.clips, s, "test")}
    assert 18 not in test_labels                     # class 19 has no test clip in this protocol


def test_random_split_handles_rare_classes_and_is_seeded(tmp_path):
    clips = [ClipRecord(f"c{l}/{i}", l) for l in range(32) for i in range(l % 4 + 1)] + \
            [ClipRecord(f"big/{i}", 0) for i in range(50)]
    a, b = random_split(clips, seed=3), random_split(clips, seed=3)
    assert a == b and random_split(clips, seed=4) != a
    ids = a["train"] + a["val"] + a["test"]
    assert sorted(ids) == sorted(c.clip_id for c in clips)    # a partition
    assert "c0/0" in a["train"]                              # 1-clip class -> train
    big = [i for i in a["train"] if i.startswith("big/")]
    assert 28 <= len(big) <= 32                               # about 60% of the large class
    p = save_split(a, tmp_path / "split.json")
    assert load_split(p) == a
    with pytest.raises(ValueError, match="not in this dataset"):
        select(clips[:3], a, "train")


def test_metrics_mark_empty_classes():
    names = [f"c{i}" for i in range(32)]
    logits = np.zeros((3, 32), np.float32)
    logits[0, 0] = logits[1, 1] = logits[2, 0] = 5
    logits[2, 1] = 1  # the true class ranks second: a top-5 hit, a top-1 miss
    m = compute_metrics(logits, np.array([0, 1, 1]), names)
    assert m["top1"] == pytest.approx(2 / 3) and m["top5"] == 1.0
    assert m["mean_class_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["per_class"][5]["note"] == "no samples" and "c5" in m["classes_without_samples"]


def _save(tmp_path, modality="skeleton"):
    net = MicroGestureNet(FusionConfig(modality=modality))
    meta = build_metadata(net.cfg, [f"c{i}" for i in range(32)], DEFAULT,
                          {"lr": 3e-4}, {"val_top1": 0.5}, 1.6)
    return save_checkpoint(tmp_path / "m.pt", net, meta), net


def test_checkpoint_round_trip_is_plain_data(tmp_path):
    path, net = _save(tmp_path)
    model, meta = load_model(path)
    assert meta.modality == "skeleton" and meta.reference_size == (320, 176) and meta.preprocessing == DEFAULT
    for k, v in net.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"


def test_corrupt_truncated_and_foreign_checkpoints(tmp_path):
    path, _ = _save(tmp_path)
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.pt: not a readable checkpoint"):
        read_checkpoint(tmp_path / "trunc.pt")
    flipped = bytearray(data)
    flipped[len(flipped) // 3: len(flipped) // 3 + 64] = b"\xff" * 64
    (tmp_path / "flip.pt").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="flip.pt"):
        load_model(tmp_path / "flip.pt")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"state_dict": {}, "metadata": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt: refused to load"):
        read_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists(), "no code from the checkpoint ran"
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an mgr checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")


def test_garbage_file_is_called_corrupt_and_checkpoints_get_normal_permissions(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04garbage" * 100)
    with pytest.raises(CheckpointError, match="junk.pt: not a readable checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    path, _ = _save(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask, "the mode any file the user writes gets, not 0600"


def test_cross_subject_protocol_is_packaged_and_can_train_on_all_train_clips(data_dir):
    import json
    from mgr.train.split import load_protocol, packaged_protocol
    official = json.loads((data_dir / "imigue_cross_subject.json").read_text())
    assert load_protocol(packaged_protocol()) == (set(official["train_subjects"]), set(official["test_subjects"]))
    idx = scan_dataset(data_dir)
    s = cross_subject_split(idx.clips)                               # no protocol path: the packaged one
    assert len(s["train"]) + len(s["val"]) == 13935 and len(s["val"]) > 1000 and len(s["test"]) == 4563
    full = cross_subject_split(idx.clips, val_fraction=0.0)          # published protocol: no validation
    assert len(full["train"]) == 13935 and full["val"] == [] and full["train"] == full["train_all"]
    assert full["test"] == s["test"]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        cross_subject_split(idx.clips, val_fraction=1.0)


def test_random_split_without_test_part_puts_each_clip_in_one_part():
    clips = [ClipRecord(f"c{n}/{i}", n) for n in range(1, 12) for i in range(n)]    # classes of 1..11 clips
    s = random_split(clips, seed=0, ratios=(0.9, 0.1, 0.0))
    ids = s["train"] + s["val"] + s["test"]
    assert len(ids) == len(set(ids)) == len(clips) and s["test"] == []
    assert random_split(clips, seed=0) == random_split(clips, seed=0)                # default ratios: unchanged
