"""Shared engines fixtures: one checkpoint per modality, exported once per session.

ResNet18 export costs seconds, so every graph set is built once (session scope) under
tmp_path_factory and read by many tests. Weights are random but fixed (seeded), and the
BatchNorm statistics are fitted on random batches, so logits are neither all-zero nor huge.
"""
from __future__ import annotations

import logging

import dataclasses

import numpy as np
import pytest
import torch

from mgr.engines.export import OnnxExportConfig, export_checkpoint
from mgr.train.checkpoint import build_metadata, save_checkpoint
from mgr.train.classes import class_names
from mgr.train.model import FusionConfig, MicroGestureNet
from mgr.train.preprocess import DEFAULT

MODALITIES = ("fusion", "rgb", "skeleton")
T = 4


@pytest.fixture(autouse=True, scope="session")
def _quiet_exporter():
    for name in ("onnx_ir", "onnxscript", "onnxruntime", "modelopt"):
        logging.getLogger(name).setLevel(logging.WARNING)


def make_model(modality: str, seed: int = 0) -> MicroGestureNet:
    torch.manual_seed(seed)
    model = MicroGestureNet(FusionConfig(modality=modality))
    model.train()   # fit BatchNorm running statistics on a few random batches
    with torch.no_grad():
        for _ in range(2):
            model(rgb=torch.randn(2, T, 3, 224, 224) if model.uses_rgb else None,
                  skeleton=torch.randn(2, 3, T, 25) if model.uses_skeleton else None)
    return model.eval()


def write_checkpoint(path, modality: str, seed: int = 0, **meta_overrides) -> str:
    model = make_model(modality, seed)
    meta = build_metadata(model.cfg, class_names(), DEFAULT,
                          train_config={"seed": 0})
    meta = dataclasses.replace(meta, **meta_overrides)
    save_checkpoint(path, model, meta)
    return str(path)


def random_clips(n: int, seed: int = 0, rgb: bool = True, skeleton: bool = True):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, T, 3, 224, 224), dtype=np.float32) if rgb else None,
            rng.standard_normal((n, 3, T, 25), dtype=np.float32) if skeleton else None)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("ckpt")
    return {m: write_checkpoint(folder / f"{m}.pt", m) for m in MODALITIES}


@pytest.fixture(scope="session")
def onnx_sets(tmp_path_factory, checkpoints):
    """Dynamic-batch FP32 graph sets, one per modality."""
    folder = tmp_path_factory.mktemp("onnx")
    return {m: export_checkpoint(checkpoints[m], folder / f"{m}.onnx", OnnxExportConfig()) for m in MODALITIES}


@pytest.fixture(scope="session")
def int8_set(tmp_path_factory, onnx_sets):
    """INT8 QDQ graph set of the fusion model, calibrated on generated arrays."""
    from mgr.engines.quantize import QuantConfig, arrays_calibration, quantize_set
    rgb, skel = random_clips(4, seed=1)
    out = tmp_path_factory.mktemp("int8") / "fusion-int8.onnx"
    return quantize_set(onnx_sets["fusion"], out, arrays_calibration(rgb, skel, batch=2),
                        QuantConfig(max_samples=16))


@pytest.fixture(scope="session")
def fp16_set(tmp_path_factory, onnx_sets):
    pytest.importorskip("modelopt.onnx.autocast", reason="nvidia-modelopt[onnx] not installed")
    from mgr.engines.precision import convert_set_fp16
    return convert_set_fp16(onnx_sets["fusion"], tmp_path_factory.mktemp("fp16") / "fusion-fp16.onnx")


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory):
    """A tiny synthetic iMiGUE set (layout 1), for calibration and split evaluation."""
    from mgr.train.synth import SynthConfig, generate
    return generate(tmp_path_factory.mktemp("synth"), SynthConfig(clips=48, max_frames=6))


@pytest.fixture(scope="session")
def torch_backends(checkpoints):
    from mgr.engines.backends import load_backend
    return {m: load_backend(checkpoints[m]) for m in MODALITIES}


@pytest.fixture(scope="session")
def ort_backends(onnx_sets):
    from mgr.engines.backends import load_backend
    return {m: load_backend(onnx_sets[m].clip, threads=2) for m in MODALITIES}
