"""Fault suite: inject a fault, check that nothing is lost and the error says what happened."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mgr.train.checkpoint import read_checkpoint

MGR = str(Path(sys.executable).with_name("mgr"))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from mgr.train.synth import SynthConfig, generate
    return generate(tmp_path_factory.mktemp("faults") / "data", SynthConfig(clips=96, seed=2, max_frames=6))


EPOCHS = 8      # a wide window between the first last.pt and the end, even on a loaded machine


def _train_cmd(data, out, *extra):
    return [MGR, "train", str(data), "--out", str(out), "--modality", "skeleton", "--epochs", str(EPOCHS),
            "--batch-size", "4", "--lr", "3e-3", "--workers", "0", "--device", "cpu", "--no-download", *extra]


def _env(tmp_path):
    return {**os.environ, "MGR_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}


def test_sigkill_mid_epoch_then_resume_ends_where_an_uninterrupted_run_ends(synth, tmp_path):
    env = _env(tmp_path)
    subprocess.run(_train_cmd(synth, tmp_path / "full"), check=True, env=env, capture_output=True, timeout=600)
    proc = subprocess.Popen(_train_cmd(synth, tmp_path / "cut"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = tmp_path / "cut" / "last.pt"                  # appears, atomically, when epoch 1 ends
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not last.exists():
        time.sleep(0.01)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)                     # mid-way through epoch 2
    proc.wait()
    state = read_checkpoint(last)["training_state"]       # the last checkpoint loads
    assert 1 <= state["epoch"] < EPOCHS
    subprocess.run([MGR, "train", "--resume", str(tmp_path / "cut")], check=True, env=env,
                   capture_output=True, timeout=600)
    a = read_checkpoint(tmp_path / "full" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "cut" / "last.pt")["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    rows = [json.loads(x) for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(EPOCHS))            # no hole, no duplicate
    best_a = read_checkpoint(tmp_path / "full" / "best.pt")["metadata"].metrics["epoch"]
    assert read_checkpoint(tmp_path / "cut" / "best.pt")["metadata"].metrics["epoch"] == best_a


def _onnx_set(tmp_path, modality="skeleton"):
    from mgr.engines.export import export_model
    from mgr.train.checkpoint import build_metadata
    from mgr.train.model import FusionConfig, MicroGestureNet
    from mgr.train.preprocess import DEFAULT
    net = MicroGestureNet(FusionConfig(modality=modality)).eval()
    meta = build_metadata(net.cfg, [f"c{i}" for i in range(32)], DEFAULT)
    return export_model(net, meta, tmp_path / "model.onnx")


@pytest.fixture(scope="module")
def fusion_set(tmp_path_factory):
    return _onnx_set(tmp_path_factory.mktemp("fusion-onnx"), "fusion")


@pytest.mark.parametrize("role", ["clip", "encoder", "head"])
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_onnx_graph_is_a_clear_error_naming_it(tmp_path, fusion_set, role, damage, pose_model):
    import shutil
    from mgr.engines.artifacts import ArtifactError
    from mgr.engines.backends import load_backend
    tmp_path = tmp_path / ("a-folder-name-long-enough-that-no-path-fits-on-one-80-column-line" * 2)
    tmp_path.mkdir()                      # an error naming the file must not break its path across lines
    for f in fusion_set.files():
        shutil.copy(f, tmp_path / f.name)
    target = tmp_path / getattr(fusion_set, role).name
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[100:4000] = bytes(b ^ 0xFF for b in data[100:4000])
    else:
        data = data[: len(data) // 2]
    target.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=target.name):
        load_backend(tmp_path / "model.onnx")
    video = _avi(tmp_path / "in.avi", frames=5)
    proc = _replay(video, tmp_path / "out.mp4", tmp_path / "p.jsonl", tmp_path / "model.onnx", tmp_path, pose_model)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and str(target) in proc.stderr + proc.stdout


def test_disk_full_during_export_leaves_no_file(tmp_path, monkeypatch):
    import onnx
    from mgr.engines import export as ex
    real = onnx.save_model

    def full(proto, f, *a, **k):
        Path(f).write_bytes(b"\0" * 1000)            # part of the file got out...
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(onnx, "save_model", full)
    monkeypatch.setattr(ex.onnx, "save_model", full, raising=False)
    with pytest.raises(OSError, match="No space left"):
        _onnx_set(tmp_path)
    monkeypatch.setattr(onnx, "save_model", real)
    left = [p.name for p in tmp_path.iterdir()]
    assert not [n for n in left if n.endswith(".onnx")], left  # nothing under a final name
    assert not [n for n in left if "tmp" in n], left            # and no temporary debris


def _avi(path, frames=60, size=(320, 240)):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, size)
    rng = np.random.default_rng(0)
    for i in range(frames):
        img = np.full((size[1], size[0], 3), 90, np.uint8)
        cv2.circle(img, (40 + 4 * i, 120), 20, (0, 200, 255), -1)
        img = np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)
        w.write(img)
    w.release()
    return path


@pytest.fixture(scope="module")
def skel_ckpt(tmp_path_factory):
    from mgr.train.checkpoint import build_metadata, save_checkpoint
    from mgr.train.model import FusionConfig, MicroGestureNet
    from mgr.train.preprocess import DEFAULT
    net = MicroGestureNet(FusionConfig(modality="skeleton"))
    meta = build_metadata(net.cfg, [f"c{i}" for i in range(32)], DEFAULT)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "skel.pt", net, meta)


def _replay(video, out, jsonl, model, tmp_path, pose):
    return subprocess.run([MGR, "replay", str(video), "--out", str(out), "--jsonl", str(jsonl), "--model", str(model),
                           "--pose-model", str(pose)], env=_env(tmp_path), capture_output=True, text=True, timeout=600)


def test_truncated_video_replays_what_is_there_and_counts_lost_frames(tmp_path, skel_ckpt, pose_model):
    video = _avi(tmp_path / "in.avi")
    data = video.read_bytes()
    video.write_bytes(data[: int(len(data) * 0.6)])         # cut mid-file
    proc = _replay(video, tmp_path / "out.mp4", tmp_path / "p.jsonl", skel_ckpt, tmp_path, pose_model)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    assert cap.read()[0] and 20 <= n < 60                    # playable, holds what was decodable
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert len(lines) == n and all(json.loads(x)["frame"] >= 0 for x in lines)
    assert "frames lost" in proc.stderr + proc.stdout


def test_jsonl_on_a_full_disk_is_a_clear_error_with_no_partial_video(tmp_path, skel_ckpt, pose_model):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    video = _avi(tmp_path / "in.avi", frames=20)
    proc = _replay(video, tmp_path / "out.mp4", "/dev/full", skel_ckpt, tmp_path, pose_model)
    assert proc.returncode != 0
    assert "No space left" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.mp4").exists() or cv2.VideoCapture(str(tmp_path / "out.mp4")).read()[0]
    assert not list(tmp_path.glob(".*partial*"))


def test_unwritable_video_output_is_a_clear_error(tmp_path, skel_ckpt, pose_model):
    video = _avi(tmp_path / "in.avi", frames=10)
    blocker = tmp_path / "notadir"
    blocker.write_text("a file where the output folder should be")
    proc = _replay(video, blocker / "out.mp4", tmp_path / "p.jsonl", skel_ckpt, tmp_path, pose_model)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "notadir" in proc.stderr + proc.stdout


@pytest.mark.parametrize("command", ["live", "replay"])
def test_sigint_finalises_the_mp4_and_leaves_whole_jsonl_lines(tmp_path, skel_ckpt, command, pose_model):
    frames = 600          # 40 s at 15 fps; replay takes several seconds even at 100 fps: still running when interrupted
    video = _avi(tmp_path / "in.avi", frames=frames)
    out, jsonl = tmp_path / "out.mp4", tmp_path / "p.jsonl"
    args = ([MGR, "live", "--video", str(video), "--headless", "--save", str(out)] if command == "live"
            else [MGR, "replay", str(video), "--out", str(out)])
    proc = subprocess.Popen(args + ["--jsonl", str(jsonl), "--model", str(skel_ckpt), "--pose-model", str(pose_model)],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if jsonl.exists() and jsonl.read_text().count("\n") >= 5:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)                         # Ctrl-C
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err[-2000:]
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert out.exists(), f"no {out.name}; folder holds {leftovers}; stderr: {err[-2000:]}"
    cap = cv2.VideoCapture(str(out))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    assert cap.read()[0] and 0 < n < frames, f"{n} frames; stderr: {err[-2000:]}"   # finalised, playable, partial
    text = jsonl.read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())
    assert not list(tmp_path.glob(".*partial*"))
