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
    model, meta = load_model(tmp_path / "run" / "last.pt")
    assert meta["clip_seconds"] == pytest.approx(34 / 25)          # median of 90, 34, 31 frames at 25 fps
    assert meta["keypoint_stats"]["std"][0] > 1.0


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
