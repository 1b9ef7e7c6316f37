"""Fixtures of the realtime tests: the real photo from tests/data, fakes, generated videos.

No network: MGR_POSE_MODEL is the model given to the run (``pose_model`` in tests/conftest.py),
or a path that is not there when none was given, and MGR_HOME is a temp folder.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mgr.train.classes import class_names
from rt_helpers import FakeBackend, pan_zoom_frames, write_video


@pytest.fixture(autouse=True)
def _no_network_env(monkeypatch, tmp_path_factory, pose_model_env):
    monkeypatch.setenv("MGR_POSE_MODEL", pose_model_env)
    monkeypatch.setenv("MGR_HOME", str(tmp_path_factory.getbasetemp() / "mgr_home"))


@pytest.fixture(scope="session")
def astronaut_bgr(data_dir) -> np.ndarray:
    path = data_dir / "astronaut.png"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        pytest.fail(f"{path} missing or unreadable")
    return image


@pytest.fixture(scope="session")
def astronaut_video(tmp_path_factory, astronaut_bgr) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "astronaut.mp4", pan_zoom_frames(astronaut_bgr, 24))


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture(scope="session")
def checkpoint_factory(tmp_path_factory):
    """Real .pt artifacts (random weights) by modality, made once per session."""
    made: dict[str, Path] = {}

    def make(modality: str = "skeleton") -> Path:
        if modality not in made:
            import torch
            from mgr.train.checkpoint import build_metadata, save_checkpoint
            from mgr.train.model import FusionConfig, MicroGestureNet
            from mgr.train.preprocess import DEFAULT
            torch.manual_seed(0)
            cfg = FusionConfig(modality=modality)
            meta = build_metadata(cfg, class_names(), DEFAULT, clip_seconds=0.4)
            path = tmp_path_factory.mktemp("models") / f"{modality}.pt"
            save_checkpoint(path, MicroGestureNet(cfg), meta)
            made[modality] = path
        return made[modality]
    return make
