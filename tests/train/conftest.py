from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def imigue_sample(data_dir) -> Path:
    return data_dir / "imigue_sample"          # real OpenPose JSON of three clips of video 298


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    from mgr.train.synth import SynthConfig, generate
    return generate(tmp_path_factory.mktemp("synth") / "data", SynthConfig(clips=96, seed=1, max_frames=8))
