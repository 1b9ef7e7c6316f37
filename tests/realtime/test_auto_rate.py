"""The live default rate: a step on every camera frame while steps keep up, else the rate the
measured step time allows, said in the log."""
from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from mgr.realtime.pipeline import LiveConfig, Recognizer
from mgr.realtime.runner import AutoRate, Outputs, run_live
from mgr.realtime.sources import EmulatedCamera, LiveSource
from rt_helpers import FakeBackend, FakePose


def test_auto_rate_steps_on_every_frame_until_the_median_step_is_longer_than_a_frame():
    rate = AutoRate(window=5, headroom=1.25, warmup=2)
    for s in (0.200, 0.150):                                       # a runtime's slow first runs decide nothing
        rate.add(s)
    assert rate.step_s == 0.0 and not rate.limited(1 / 30) and rate.period_s(False) == 0.0
    for s in (0.030, 0.028, 0.029):                                # shorter than a frame at 30 fps
        rate.add(s)
    assert rate.step_s == pytest.approx(0.029) and not rate.limited(1 / 30)
    for s in (0.060, 0.062, 0.061, 0.300):                         # slow steps, one outlier
        rate.add(s)
    assert rate.step_s == pytest.approx(0.061) and rate.limited(1 / 30)
    assert rate.period_s(True) == pytest.approx(1.25 * 0.061)      # never back to back
    assert rate.limited(0.065, was=True) and not rate.limited(0.065, was=False)   # hysteresis around a frame


class SlowBackend(FakeBackend):
    """A model whose step takes ``seconds`` (the head sleeps), to stand for a slow machine."""

    def __init__(self, seconds: float):
        super().__init__("skeleton")
        self.seconds = seconds
        self.started: list[float] = []

    def classify(self, features, skeleton):
        self.started.append(time.perf_counter())
        time.sleep(self.seconds)
        return super().classify(features, skeleton)


def live_run(backend, seconds: float = 2.5):
    frames = [np.full((120, 160, 3), 60 + i, np.uint8) for i in range(30)]
    source = LiveSource(lambda: EmulatedCamera(frames, fps=30), "emulated camera", max_reconnects=0)
    cfg = LiveConfig(window_s=1.0, inference_fps=None)         # the live default
    try:
        return run_live(source, Recognizer(backend, FakePose(), cfg), cfg, Outputs(), None, seconds)
    finally:
        source.close()


def test_live_default_steps_on_every_frame_when_steps_keep_up(caplog):
    caplog.set_level(logging.INFO, logger="mgr.realtime.runner")
    summary = live_run(FakeBackend("skeleton"))
    assert summary.frames > 40 and summary.steps >= 0.7 * summary.frames    # a few ms a step at 30 fps
    assert not [r for r in caplog.records if "steps/s, below" in r.getMessage()]


def test_live_default_falls_back_to_what_slow_steps_allow_and_says_so(caplog):
    caplog.set_level(logging.INFO, logger="mgr.realtime.runner")
    backend = SlowBackend(0.1)
    summary = live_run(backend, seconds=3.5)
    # once the 1 s window has filled, steps take 100 ms: at most 1 / (1.25 x 0.1 s) = 8 a second,
    # never back to back (a gap of at least a quarter step between them); the display keeps 30 fps
    settled = backend.started[8:]                       # the median has seen slow steps only
    gaps = np.diff(settled)
    assert summary.display_fps > 25 and len(settled) >= 5
    assert np.median(gaps) >= 0.12 and (len(settled) - 1) / (settled[-1] - settled[0]) <= 8.5
    (said,) = [r.getMessage() for r in caplog.records if "steps/s, below" in r.getMessage()]
    assert "a step takes 1" in said and "--inference-fps" in said
