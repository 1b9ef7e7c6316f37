"""mgr evaluate: the split it evaluates on, its device and batch size."""

import pytest
import torch
import typer
from typer.testing import CliRunner

from mgr.train import cli as train_cli
from mgr.train.checkpoint import build_metadata, save_checkpoint
from mgr.train.data import scan_dataset
from mgr.train.model import FusionConfig, MicroGestureNet
from mgr.train.preprocess import DEFAULT
from mgr.train.run_eval import evaluate_checkpoint
from mgr.train.split import random_split, save_split


def _checkpoint(run):
    net = MicroGestureNet(FusionConfig(modality="skeleton"))
    meta = build_metadata(net.cfg, [f"c{i}" for i in range(32)], DEFAULT, {"seed": 0})
    return save_checkpoint(run / "best.pt", net, meta)


def test_missing_split_file_is_an_error_unless_a_new_split_is_asked_for(synth_data, tmp_path):
    ckpt = _checkpoint(tmp_path / "run")
    with pytest.raises(ValueError, match=r"split file .*run/split\.json is missing.*--split-file.*--new-split"):
        evaluate_checkpoint(str(ckpt), str(synth_data), workers=0)
    assert not (tmp_path / "run" / "eval_test.json").exists()
    m = evaluate_checkpoint(str(ckpt), str(synth_data), workers=0, new_split=True, batch_size=7)
    assert m["split_source"].startswith("new random split") and m["clips"] > 0
    split = random_split(scan_dataset(synth_data).clips, seed=3)
    save_split(split, tmp_path / "elsewhere" / "split.json")
    m = evaluate_checkpoint(str(ckpt), str(synth_data), workers=0, split_file=str(tmp_path / "elsewhere" / "split.json"))
    assert m["split_source"].endswith("elsewhere/split.json") and m["clips"] == len(split["test"])


def test_evaluate_cli_device_defaults_to_auto_and_takes_batch_size(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr("mgr.train.run_eval.evaluate_checkpoint", lambda *a, **kw: seen.update(kw) or {
        "modality": "skeleton", "clips": 0, "per_class": [], "top1": None, "top5": None,
        "mean_class_accuracy": None, "split_source": "x"})
    app, bench = typer.Typer(), typer.Typer()
    train_cli.register(app, bench)
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "best.pt"), str(tmp_path), "--batch-size", "5"])
    assert res.exit_code == 0, res.output
    assert seen["device"] == "auto" and seen["batch_size"] == 5 and seen["new_split"] is False
    from mgr.train.run_eval import resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(ValueError, match="choose auto, cpu or cuda"):
        resolve_device("tpu")
