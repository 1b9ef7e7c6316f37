"""`mgr bench soak`: the long replay with memory sampled, run here for seconds (the real run is a benchmark).

The CLI tests use the real pose model and a real .pt artifact (random weights) on a
generated input: the same path a 10-minute soak takes, only shorter.
"""
from __future__ import annotations

import itertools
import json

import cv2
import pytest
from typer.testing import CliRunner

from mgr.realtime.cli import app
from mgr.realtime.outputs import JSONL_KEYS
from mgr.realtime.soak import SoakConfig, memory_figures, run_soak
from rt_helpers import FakeBackend, FakePose, pan_zoom_frames, write_video

runner = CliRunner()
MEMORY_KEYS = {"start_mb", "warmup_mb", "warmup_at_s", "end_mb", "peak_mb", "growth_mb", "slope_mb_per_min",
               "max_growth_mb", "within_bound", "warmup_sampled"}


def text(res) -> str:
    return " ".join(res.output.split())


def decoded_frames(path) -> tuple[int, tuple[int, int]]:
    cap, n, size = cv2.VideoCapture(str(path)), 0, None
    assert cap.isOpened(), path
    while True:
        ok, image = cap.read()
        if not ok:
            break
        n, size = n + 1, (image.shape[1], image.shape[0])
    cap.release()
    return n, size


def test_memory_figures_warmup_growth_slope_and_bound():
    samples = [{"t_s": 0.0, "rss_mb": 100.0}] + [{"t_s": 60.0 * k, "rss_mb": 300.0 + 2.0 * k} for k in range(1, 6)]
    m = memory_figures(samples, max_growth_mb=10.0)
    assert (m["start_mb"], m["warmup_mb"], m["end_mb"], m["warmup_at_s"]) == (100.0, 302.0, 310.0, 60.0)
    assert m["growth_mb"] == pytest.approx(8.0) and m["slope_mb_per_min"] == pytest.approx(2.0)
    assert m["within_bound"] and m["warmup_sampled"]
    assert not memory_figures(samples, max_growth_mb=7.9)["within_bound"]
    short = memory_figures([{"t_s": 0.0, "rss_mb": 100.0}, {"t_s": 0.5, "rss_mb": 150.0}], 1.0)
    assert short["growth_mb"] == 0.0 and short["slope_mb_per_min"] is None and not short["warmup_sampled"]


def test_soak_live_mode_samples_every_interval(tmp_path, astronaut_bgr):
    video = write_video(tmp_path / "s.mp4", pan_zoom_frames(astronaut_bgr, 10, (320, 240)), fps=10)
    seen = []
    result = run_soak(SoakConfig(video, tmp_path / "out", mode="live", minutes=1.5 / 60, interval_s=0.5, window_s=0.3),
                      FakeBackend(), FakePose, on_sample=seen.append)
    assert len(result["intervals"]) == 3 and seen == result["samples"]
    assert [s["label"] for s in seen] == ["start", "warm-up", "", "", "end"]
    assert all(r["display_fps"] > 0 and r["rss_mb"] > 0 and r["dropped"] >= 0 for r in result["intervals"])
    assert MEMORY_KEYS <= set(result["memory"]) and result["outputs"] is None
    assert result["history_frames"] <= 30                 # the frame history stays bounded by the window


def test_bench_soak_generates_replays_and_writes_whole_outputs(tmp_path, checkpoint_factory):
    out, figures = tmp_path / "out", tmp_path / "soak.json"
    res = runner.invoke(app, ["bench", "soak", "--minutes", "0.05", "--interval", "1", "--model",
                              str(checkpoint_factory("skeleton")), "--out", str(out), "--json", str(figures)])
    assert res.exit_code == 0, res.output
    assert "soak passed" in text(res) and "memory at end" in text(res)
    r = json.loads(figures.read_text())
    assert r["mode"] == "replay" and r["video"].endswith("astronaut-3s-15fps.mp4")     # generated, cached
    assert r["frames"] == 45 and r["video_seconds"] == pytest.approx(3.0) and not r["interrupted"]
    assert MEMORY_KEYS <= set(r["memory"]) and r["memory"]["within_bound"] and r["memory"]["warmup_sampled"]
    assert r["memory"]["warmup_at_s"] == 1.0 and r["memory"]["slope_mb_per_min"] is not None
    assert [s["label"] for s in r["samples"]] == ["start", "warm-up", "", "", "end"]
    assert all(s["rss_mb"] > 0 for s in r["samples"])
    # the annotated mp4 opens and holds every frame; the JSONL has one whole line per inference step
    assert decoded_frames(out / "soak.mp4") == (45, (640, 360))
    raw = (out / "soak.jsonl").read_text()
    lines = [json.loads(line) for line in raw.splitlines()]
    assert raw.endswith("\n") and len(lines) == r["steps"] and abs(r["steps"] - 30) <= 1   # 10 steps/s of 3 s
    assert all(set(JSONL_KEYS) <= set(rec) for rec in lines)
    assert r["outputs"]["whole"] and r["outputs"]["mp4_frames"] == 45 and r["outputs"]["jsonl_lines"] == r["steps"]


def test_bench_soak_fails_when_memory_grows_over_the_bound(tmp_path, astronaut_bgr, checkpoint_factory, monkeypatch):
    """The check can fail: a leak (RSS rising 5 MB a sample) against a bound of 0.5 MB exits 1, figures kept."""
    leak = itertools.count()
    monkeypatch.setattr("mgr.realtime.soak.rss_mb", lambda: 100.0 + 5.0 * next(leak))
    video = write_video(tmp_path / "s.mp4", pan_zoom_frames(astronaut_bgr, 12, (320, 240)), fps=10)
    figures = tmp_path / "soak.json"
    res = runner.invoke(app, ["bench", "soak", str(video), "--interval", "0.4", "--max-growth-mb", "0.5", "--model",
                              str(checkpoint_factory("skeleton")), "--json", str(figures)])
    assert res.exit_code == 1, res.output
    assert "soak failed" in text(res) and "over the bound of 0.5 MB" in text(res)
    m = json.loads(figures.read_text())["memory"]
    assert m["growth_mb"] == pytest.approx(15.0) and not m["within_bound"]     # warm-up, 2 more samples, end
