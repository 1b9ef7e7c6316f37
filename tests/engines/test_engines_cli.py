"""mgr export-onnx end to end, and calibration/evaluation on a synthetic iMiGUE split."""
from __future__ import annotations

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from mgr.engines import cli as engines_cli
from mgr.engines.clip_data import ClipSource, dataset_calibration, evaluate_backend
from mgr.engines.onnx_meta import read_metadata


def flat(text: str) -> str:
    """Rich wraps long lines at the test terminal's width; compare words, not layout."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def app():
    app, bench = typer.Typer(), typer.Typer()
    app.add_typer(bench, name="bench")
    engines_cli.register(app, bench)
    return app


def test_export_onnx_cli_writes_the_set_and_reports_parity(app, tmp_path, checkpoints):
    result = CliRunner().invoke(app, ["export-onnx", checkpoints["skeleton"], "--out", str(tmp_path / "s.onnx"),
                                      "--batch", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.head.onnx", "s.onnx"]
    assert "parity vs torch eager" in flat(result.output) and "top-1 agreement 100.0%" in flat(result.output)
    assert "skeleton" in result.output and "logits" in result.output


@pytest.mark.parametrize("args, words", [
    (["--int8"], "--calib"),
    (["--int8", "--fp16"], "one of --fp16 and --int8"),
    (["--batch", "7"], "1, dynamic"),
])
def test_export_onnx_cli_errors(app, tmp_path, checkpoints, args, words):
    result = CliRunner().invoke(app, ["export-onnx", checkpoints["skeleton"], "--out", str(tmp_path / "s.onnx"), *args])
    assert result.exit_code == 2 and words in flat(result.stderr) and "error:" in result.stderr   # user error
    assert list(tmp_path.iterdir()) == []


def test_export_onnx_cli_missing_folder_and_bad_checkpoint(app, tmp_path, checkpoints):
    r = CliRunner().invoke(app, ["export-onnx", checkpoints["skeleton"], "--out", str(tmp_path / "no" / "s.onnx")])
    assert r.exit_code == 2 and "does not exist" in flat(r.stderr)
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    r = CliRunner().invoke(app, ["export-onnx", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "s.onnx")])
    assert r.exit_code == 2 and "bad.pt" in flat(r.stderr) and "not a readable checkpoint" in flat(r.stderr)


def test_int8_export_calibrated_on_a_dataset_folder(app, tmp_path, checkpoints, synth_data):
    result = CliRunner().invoke(app, ["export-onnx", checkpoints["skeleton"], "--out", str(tmp_path / "q.onnx"),
                                      "--int8", "--calib", str(synth_data), "--calib-clips", "8"])
    assert result.exit_code == 0, result.output
    assert read_metadata(tmp_path / "q.onnx")[1].precision == "int8"


def test_dataset_calibration_yields_preprocessed_batches(synth_data, torch_backends):
    meta = torch_backends["fusion"].metadata
    batches = list(dataset_calibration(ClipSource(synth_data, part="train", max_clips=5, batch=2), meta)())
    assert [b[0].shape for b in batches] == [(2, 4, 3, 224, 224)] * 2 + [(1, 4, 3, 224, 224)]
    assert batches[0][1].shape == (2, 3, 4, 25) and np.isfinite(batches[0][0]).all()


@pytest.mark.parametrize("modality", ["skeleton", "rgb", "fusion"])
def test_onnx_and_torch_agree_on_top1_over_a_synthetic_test_split(synth_data, torch_backends, ort_backends, modality):
    src = ClipSource(synth_data, part="test", batch=8)
    m_torch, logits_torch = evaluate_backend(torch_backends[modality], src)
    m_onnx, logits_onnx = evaluate_backend(ort_backends[modality], src)
    assert m_torch["clips"] == m_onnx["clips"] > 0
    assert (logits_torch.argmax(1) == logits_onnx.argmax(1)).all()
    assert m_torch["top1"] == m_onnx["top1"]
