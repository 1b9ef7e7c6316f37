from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} missing: the tests need ../shared beside the repo (real iMiGUE sample, labels)")
    return SHARED


@pytest.fixture(scope="session")
def imigue_sample(shared_dir) -> Path:
    return shared_dir / "data" / "imigue_sample"


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    from mgr.train.synth import SynthConfig, generate
    return generate(tmp_path_factory.mktemp("synth") / "data", SynthConfig(clips=96, seed=1, max_frames=8))
