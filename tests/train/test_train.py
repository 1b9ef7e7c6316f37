"""Training: real-data step, resume equivalence, interruption, torchrun, CLI end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mgr.train.checkpoint import load_model, read_checkpoint
from mgr.train.fit import TrainConfig, fit

CPU = dict(workers=0, device="cpu", allow_download=False)


def _weights(path):
    return read_checkpoint(path)["state_dict"]


def test_real_sample_skeleton_step_has_finite_loss(imigue_sample, tmp_path):
    rows = []
    fit(str(imigue_sample), tmp_path / "run", TrainConfig(modality="skeleton", epochs=1, batch_size=3, **CPU),
        callback=lambda k, d: rows.append(d) if k == "epoch" else None)
    assert len(rows) == 1 and np.isfinite(rows[0]["train_loss"]) and rows[0]["train_clips"] == 3
    assert 0 <= rows[0]["train_top1"] <= rows[0]["train_top5"] <= 1                # top-5 logged too
    logged = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert logged["train_top5"] == rows[0]["train_top5"]
    model, meta = load_model(tmp_path / "run" / "last.pt")
    assert meta.clip_seconds == pytest.approx(34 / 25)          # median of 90, 34, 31 frames at 25 fps
    assert meta.keypoint_stats.std[0] > 1.0


def test_resume_after_interruption_matches_uninterrupted_run(synth_data, tmp_path):
    cfg = TrainConfig(modality="skeleton", epochs=3, batch_size=16, lr=3e-3, **CPU)
    fit(str(synth_data), tmp_path / "full", cfg)

    class Stop(KeyboardInterrupt):
        pass

    def interrupt(kind, d):
        if kind == "step" and d["epoch"] == 1 and d["step"] == 2:
            raise Stop()                                   # Ctrl-C in the middle of epoch 2

    with pytest.raises(Stop):
        fit(str(synth_data), tmp_path / "cut", cfg, callback=interrupt)
    last = read_checkpoint(tmp_path / "cut" / "last.pt")
    assert last["training_state"]["epoch"] == 1            # the last finished epoch still loads
    with pytest.raises(ValueError, match="--resume"):
        fit(str(synth_data), tmp_path / "cut", cfg)      # never silently overwrite a run
    fit(str(synth_data), tmp_path / "cut", cfg, resume=True)
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "cut" / "last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    log = [json.loads(line) for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2]


@pytest.mark.slow
def test_synthetic_data_is_learnable_by_fusion(tmp_path_factory):
    from mgr.train.synth import SynthConfig, generate
    data = generate(tmp_path_factory.mktemp("learn") / "d", SynthConfig(clips=512, seed=5, max_frames=6))
    rows = []
    fit(str(data), tmp_path_factory.mktemp("run") / "r",
        TrainConfig(modality="fusion", epochs=10, lr=3e-3, freeze_backbone=True, workers=2, device="cpu",
                    allow_download=False),
        callback=lambda k, d: rows.append(d) if k == "epoch" else None)
    best = max(r["val_top1"] for r in rows)
    assert best > 4 / 32, f"fusion val top-1 {best:.3f} is not well above chance (1/32)"


def test_torchrun_two_processes_agree(synth_data, tmp_path):
    mgr = Path(sys.executable).with_name("mgr")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(mgr),
           "train", str(synth_data), "--modality", "skeleton", "--epochs", "1", "--batch-size", "8",
           "--workers", "0", "--device", "cpu", "--no-download", "--out", str(tmp_path / "ddp")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MGR_HOME": str(tmp_path / "home")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = json.loads((tmp_path / "ddp" / "ddp_check.json").read_text())
    assert check["world_size"] == 2 and check["agree"], check
    assert (tmp_path / "ddp" / "best.pt").exists()
    # the logged epoch covers both ranks' shards (all_reduce), not rank 0's alone
    n_train = len(json.loads((tmp_path / "ddp" / "split.json").read_text())["train"])
    row = json.loads((tmp_path / "ddp" / "log.jsonl").read_text().splitlines()[0])
    assert row["train_clips"] == 2 * ((n_train + 1) // 2), (row, n_train)   # DistributedSampler pads to even
    assert 0 <= row["train_top1"] <= row["train_top5"] <= 1


def _leftovers(out):
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


@pytest.mark.parametrize("bad", ["modality", "missing_pretrained", "garbage_pretrained", "protocol_with_random",
                                 "no_data", "rgb_without_frames"])
def test_bad_arguments_fail_before_writing_into_the_run_folder(bad, synth_data, imigue_sample, tmp_path):
    data, cfg = synth_data, TrainConfig(modality="skeleton", epochs=1, **CPU)
    (tmp_path / "garbage.pth").write_bytes(b"not a state dict")
    if bad == "modality":
        cfg = TrainConfig(modality="depth", epochs=1, **CPU)
    elif bad == "missing_pretrained":
        cfg = TrainConfig(modality="rgb", pretrained=str(tmp_path / "nope.pth"), **CPU)
    elif bad == "garbage_pretrained":
        cfg = TrainConfig(modality="rgb", pretrained=str(tmp_path / "garbage.pth"), **CPU)
    elif bad == "protocol_with_random":
        cfg = TrainConfig(modality="skeleton", protocol=str(tmp_path / "p.json"), **CPU)
    elif bad == "no_data":
        data = tmp_path / "missing"
    elif bad == "rgb_without_frames":
        data, cfg = imigue_sample, TrainConfig(modality="fusion", **CPU)   # official layout, no video
    out = tmp_path / "run"
    with pytest.raises(ValueError):
        fit(str(data), out, cfg)
    assert _leftovers(out) == []


def test_stale_split_in_run_folder_is_refused_not_reused(synth_data, tmp_path):
    from mgr.train.data import scan_dataset
    from mgr.train.split import random_split, save_split
    clips = scan_dataset(synth_data).clips
    cfg = TrainConfig(modality="skeleton", epochs=1, max_steps_per_epoch=1, seed=0, **CPU)
    save_split(random_split(clips, seed=1), tmp_path / "a" / "split.json")        # left by another attempt
    with pytest.raises(ValueError, match=r"a/split\.json was made with seed 1 \(asked: 0\)"):
        fit(str(synth_data), tmp_path / "a", cfg)
    save_split(random_split(clips[:60], seed=0), tmp_path / "b" / "split.json")   # another (smaller) dataset
    with pytest.raises(ValueError, match=r"b/split\.json was made with other clips"):
        fit(str(synth_data), tmp_path / "b", cfg)
    assert _leftovers(tmp_path / "b") == ["split.json"]
    save_split(random_split(clips, seed=0), tmp_path / "c" / "split.json")        # the same split: fine
    fit(str(synth_data), tmp_path / "c", cfg)
    assert (tmp_path / "c" / "last.pt").exists()


def test_balanced_sampler_is_refused_under_torchrun(synth_data, tmp_path, monkeypatch):
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="--balanced-sampler is not supported with several processes"):
        fit(str(synth_data), tmp_path / "run", TrainConfig(modality="skeleton", balanced_sampler=True, **CPU))
    assert _leftovers(tmp_path / "run") == []


def test_ddp_on_cuda_binds_each_rank_to_its_own_gpu(monkeypatch):
    import functools
    import torch.distributed as dist
    from mgr.train import fit as fit_mod
    calls = []

    @functools.wraps(dist.init_process_group)          # keeps the installed torch's signature
    def fake_init(backend=None, **kw):
        calls.append(("init", backend, kw.get("device_id")))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", torch.device(d))))
    monkeypatch.setattr(dist, "init_process_group", fake_init)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    dev = fit_mod._init_distributed(TrainConfig(device="auto"), world=2, local_rank=1)
    assert dev == torch.device("cuda", 1)
    assert calls == [("set_device", torch.device("cuda", 1)), ("init", "nccl", torch.device("cuda", 1))]
    calls.clear()
    assert fit_mod._init_distributed(TrainConfig(device="cpu"), world=2, local_rank=1) == torch.device("cpu")
    assert calls == [("init", "gloo", None)]                 # the CPU path is unchanged
    with pytest.raises(ValueError, match="LOCAL_RANK 2 but only 2 CUDA devices"):
        fit_mod._init_distributed(TrainConfig(device="cuda"), world=3, local_rank=2)


def test_cross_subject_with_packaged_protocol_and_no_validation(imigue_sample, tmp_path):
    rows = []
    cfg = TrainConfig(modality="skeleton", epochs=2, batch_size=3, split="cross-subject", val_fraction=0.0, **CPU)
    result = fit(str(imigue_sample), tmp_path / "run", cfg, callback=lambda k, d: rows.append(d) if k == "epoch" else None)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["kind"] == "cross-subject" and len(split["train"]) == 3 and split["val"] == []  # subject 22: train
    assert all(r["train_clips"] == 3 and "val_top1" not in r for r in rows)
    assert result["best_epoch"] == 1 and result["best_val_top1"] is None
    assert read_checkpoint(tmp_path / "run" / "best.pt")["metadata"].metrics["epoch"] == 1   # best = last
    with pytest.raises(ValueError, match="cross-subject only"):
        fit(str(imigue_sample), tmp_path / "r2", TrainConfig(modality="skeleton", val_fraction=0.0, **CPU))


def test_resume_names_the_options_it_ignores(synth_data, tmp_path, monkeypatch):
    from typer.testing import CliRunner
    from mgr.realtime.cli import app
    monkeypatch.setenv("MGR_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    fit(str(synth_data), run, TrainConfig(modality="skeleton", epochs=1, max_steps_per_epoch=1, **CPU))
    res = CliRunner().invoke(app, ["train", "--resume", str(run), "--epochs", "99", "--lr", "1"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "saved configuration" in text and "ignored: --epochs, --lr" in text
    assert len((run / "log.jsonl").read_text().splitlines()) == 1            # still the saved 1 epoch
    res = CliRunner().invoke(app, ["train", "--resume", str(run)])
    assert res.exit_code == 0 and "ignored" not in res.output


def test_amp_on_cpu_says_it_trains_in_full_precision(synth_data, tmp_path, caplog):
    import logging
    with caplog.at_level(logging.WARNING, logger="mgr.train.fit"):
        fit(str(synth_data), tmp_path / "run", TrainConfig(modality="skeleton", epochs=1, max_steps_per_epoch=1,
                                                           amp=True, **CPU))
    assert any("--amp is for CUDA" in r.getMessage() for r in caplog.records)
