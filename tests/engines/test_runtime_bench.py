"""mgr bench models: measurement mechanics (never timing thresholds) and the report."""
from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from conftest import random_clips
from mgr.engines import cli as engines_cli
from mgr.engines.bench import BenchConfig, bench_backend, latency_stats, run_bench, streaming_steps, time_calls

TINY = BenchConfig(warmup=1, iters=2, min_iters=1, max_seconds=5.0, clip_batches=(2,))


def test_warmup_calls_are_not_recorded_and_iterations_are_fixed():
    calls = []
    times = time_calls(lambda: calls.append(1), BenchConfig(warmup=3, iters=5, min_iters=1))
    assert len(calls) == 8 and len(times) == 5 and (times >= 0).all()


def test_time_bound_stops_after_min_iters():
    cfg = BenchConfig(warmup=0, iters=1000, min_iters=4, max_seconds=1e-9)
    assert len(time_calls(lambda: None, cfg)) == 4


def test_latency_stats():
    s = latency_stats(np.arange(1, 101) / 1e3)     # 1..100 ms
    assert s["n"] == 100 and s["p50_ms"] == pytest.approx(50.5) and s["p95_ms"] == pytest.approx(95.05)


@pytest.mark.parametrize("kwargs", [{"iters": 0}, {"warmup": -1}, {"max_seconds": 0}, {"clip_batches": (0,)}])
def test_bad_bench_config(kwargs):
    with pytest.raises(ValueError):
        BenchConfig(**kwargs)


def test_cached_streaming_step_equals_naive_once_the_window_is_full(ort_backends):
    backend = ort_backends["fusion"]
    rgb, skel = random_clips(1)
    naive, cached = streaming_steps(backend, rgb[0, :1], skel)
    for _ in range(backend.num_frames):   # fill the T-slot feature cache with the same frame
        out = cached()
    np.testing.assert_allclose(out, naive(), atol=1e-5)


def test_bench_backend_reports_every_measurement(ort_backends):
    r = bench_backend(ort_backends["fusion"], TINY)
    for key in ("encoder_b1", "head_b1", "stream_naive", "stream_cached"):
        assert r[key]["n"] == 2 and r[key]["p50_ms"] > 0 and r[key]["p95_ms"] >= r[key]["p50_ms"]
    assert r["clips_per_s"]["2"] > 0 and r["stream_speedup"] > 0
    assert r["runtime"] == "onnxruntime" and r["precision"] == "fp32"
    skeleton = bench_backend(ort_backends["skeleton"], TINY)
    assert "encoder_b1" not in skeleton      # no frame encoder to time


def test_bench_cli_prints_a_table_and_writes_json(tmp_path, onnx_sets, checkpoints, synth_data):
    app, bench = typer.Typer(), typer.Typer()
    app.add_typer(bench, name="bench")
    engines_cli.register(app, bench)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "models", checkpoints["skeleton"], str(onnx_sets["skeleton"].clip),
                                      "--json", str(out), "--threads", "1", "--iters", "2", "--warmup", "1",
                                      "--data", str(synth_data), "--part", "test"])
    assert result.exit_code == 0, result.output
    assert "stream step, cached" in result.output and "onnxruntime fp32" in result.output
    report = json.loads(out.read_text())
    assert [r["runtime"] for r in report["results"]] == ["torch", "onnxruntime"]
    machine = report["machine"]
    assert machine["threads"] == 1 and machine["cpu"] and "gpus" in machine
    assert machine["libraries"]["onnxruntime"] and machine["libraries"]["torch"]
    assert report["config"]["warmup"] == 1
    acc = [r["accuracy"] for r in report["results"]]
    assert acc[0]["clips"] == acc[1]["clips"] > 0 and acc[0]["top1"] == acc[1]["top1"]


def test_run_bench_with_unknown_suffix_fails_cleanly():
    with pytest.raises(ValueError, match="valid suffixes"):
        run_bench(["model.xyz"], cfg=TINY)


def test_bench_takes_the_split_beside_the_checkpoint(tmp_path, checkpoints, synth_data):
    """Accuracy on a run's test part must use that run's split, not a fresh seeded one."""
    import shutil
    from mgr.train.data import scan_dataset
    from mgr.train.split import save_split
    run = tmp_path / "run"
    run.mkdir()
    ckpt = run / "best.pt"
    shutil.copy(checkpoints["skeleton"], ckpt)
    ids = [c.clip_id for c in scan_dataset(synth_data).clips]
    save_split({"train": ids[3:], "val": [], "test": ids[:3]}, run / "split.json")
    app, bench = typer.Typer(), typer.Typer()
    app.add_typer(bench, name="bench")
    engines_cli.register(app, bench)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "models", str(ckpt), "--json", str(out), "--threads", "1",
                                      "--iters", "2", "--warmup", "1", "--data", str(synth_data)])
    assert result.exit_code == 0, result.output
    assert "using the run's split" in " ".join(result.output.split())
    assert json.loads(out.read_text())["results"][0]["accuracy"]["clips"] == 3
