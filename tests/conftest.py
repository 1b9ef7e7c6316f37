"""Fixtures of every test folder: the fixture folder tests/data and the pose model.

tests/data/ holds the small real fixtures (tests/data/README.md). The pose model is the one
thing the tests need from outside the clone: they find it the way the product does, through
MGR_POSE_MODEL (README.md, "The pose model"), and never download it or read the user's cache.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Lab Streaming Layer stays on this machine in every test (liblsl reads its config once, at
# first use, so this comes before anything imports pylsl): no IPv6, resolution scope "machine".
_LSL_CFG = Path(tempfile.mkdtemp(prefix="mgr-lsl-")) / "lsl_api.cfg"
_LSL_CFG.write_text("[ports]\nIPv6 = disable\n\n[multicast]\nResolveScope = machine\n")
os.environ["LSLAPICFG"] = str(_LSL_CFG)

DATA_DIR = Path(__file__).resolve().parent / "data"
POSE_MODEL_HINT = "MGR_POSE_MODEL=/path/to/pose_landmarker_full.task"
# Read once, before any test changes the environment; a relative path is taken from where pytest starts.
_GIVEN = os.environ.get("MGR_POSE_MODEL")
GIVEN_POSE_MODEL = Path(_GIVEN).expanduser().resolve() if _GIVEN else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data: the official iMiGUE label file and protocol, the real sample, the astronaut photo."""
    return DATA_DIR


@pytest.fixture(scope="session")
def pose_model() -> Path:
    """The pose model given by MGR_POSE_MODEL, checked by the product's resolver; never downloaded."""
    if GIVEN_POSE_MODEL is None:
        pytest.fail(f"no pose model: this test needs a MediaPipe pose landmarker .task file; set "
                    f"{POSE_MODEL_HINT} (README.md, 'The pose model', says where to get it)", pytrace=False)
    from mgr.realtime.posemodel import PoseModelError, resolve_pose_model
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MGR_POSE_MODEL", str(GIVEN_POSE_MODEL))
        try:
            return resolve_pose_model(None, allow_download=False)
        except PoseModelError as e:
            pytest.fail(f"{e}; set {POSE_MODEL_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def pose_model_env(tmp_path_factory) -> str:
    """What tests put in MGR_POSE_MODEL: the given model, or a path that is not there (so that
    nothing falls back to a download), named after what to set."""
    if GIVEN_POSE_MODEL is not None:
        return str(GIVEN_POSE_MODEL)
    return str(tmp_path_factory.getbasetemp() / "MGR_POSE_MODEL-not-set" / "pose_landmarker_full.task")


@pytest.fixture(scope="session")
def chromium() -> str:
    """A headless-capable Chromium for the tests that render pages (the HTML report, the live page)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("Chromium not installed (Debian package 'chromium')")

