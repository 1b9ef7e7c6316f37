"""Fixtures of the realtime tests: the real pose model from ../shared, fakes, generated videos.

No network: MGR_POSE_MODEL points at ../shared/models/blazepose_full.task (computed from
the repository, as CI clones it with shared beside it) and MGR_HOME at a temp folder.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mgr.train.classes import class_names
from rt_helpers import FakeBackend, pan_zoom_frames, write_video

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
POSE_MODEL = SHARED / "models" / "blazepose_full.task"
ASTRONAUT = SHARED / "data" / "astronaut.png"


@pytest.fixture(autouse=True)
def _no_network_env(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("MGR_POSE_MODEL", str(POSE_MODEL))
    monkeypatch.setenv("MGR_HOME", str(tmp_path_factory.getbasetemp() / "mgr_home"))


@pytest.fixture(scope="session")
def pose_model() -> Path:
    if not POSE_MODEL.is_file():
        pytest.fail(f"{POSE_MODEL} missing: the tests need ../shared beside the repo")
    return POSE_MODEL


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    image = cv2.imread(str(ASTRONAUT), cv2.IMREAD_COLOR)
    if image is None:
        pytest.fail(f"{ASTRONAUT} missing or unreadable")
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
            from mgr.train.preprocess import KeypointStats
            torch.manual_seed(0)
            cfg = FusionConfig(modality=modality)
            meta = build_metadata(cfg, class_names(), (320, 176), KeypointStats.identity(), clip_seconds=0.4)
            path = tmp_path_factory.mktemp("models") / f"{modality}.pt"
            save_checkpoint(path, MicroGestureNet(cfg), meta)
            made[modality] = path
        return made[modality]
    return make
