"""``mgr bench models``: every artifact through its backend, in one process, same inputs.

Per artifact: p50/p95 latency of the frame encoder and of the clip head at batch 1,
clips per second of the whole clip (encoder + head) at batch 8 and 32, and the live
streaming step both ways: *naive* (encode all T frames again every step) and *cached*
(encode the one new frame, reuse the T-1 cached features; README "Architecture",
live feature caching). Warm-up calls are never timed; each measurement stops after ``iters`` calls
or ``max_seconds``, whichever comes first (at least ``min_iters``).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mgr.train.atomic import atomic_write_json

from .artifacts import FEATURE_DIM, NUM_JOINTS, SKELETON_CHANNELS
from .backends import Backend, load_backend
from mgr.train.machine import machine_info

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    warmup: int = 5                          # untimed calls before each batch-1 measurement
    iters: int = 50                          # timed calls per measurement, at most
    min_iters: int = 5                       # timed calls per measurement, at least
    max_seconds: float = 10.0                # time bound per measurement (after min_iters)
    clip_batches: tuple[int, ...] = (8, 32)  # whole-clip batch sizes for clips/s
    seed: int = 0                            # random inputs (latency does not depend on values)

    def __post_init__(self) -> None:
        if self.iters < 1 or self.min_iters < 1 or self.warmup < 0 or self.max_seconds <= 0:
            raise ValueError("bench needs iters >= 1, min_iters >= 1, warmup >= 0 and max_seconds > 0")
        if any(b < 1 for b in self.clip_batches):
            raise ValueError(f"clip batch sizes must be >= 1, got {self.clip_batches}")


def time_calls(fn: Callable[[], object], cfg: BenchConfig, warmup: int | None = None) -> np.ndarray:
    """Seconds per call of ``fn``; warm-up calls are run first and not recorded."""
    for _ in range(cfg.warmup if warmup is None else warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < cfg.iters:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= cfg.min_iters and time.perf_counter() - start > cfg.max_seconds:
            break
    return np.asarray(times)


def latency_stats(times: np.ndarray) -> dict:
    ms = times * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "n": int(ms.size)}


def random_inputs(backend: Backend, n: int, rng: np.random.Generator) -> tuple:
    T = backend.num_frames
    rgb = rng.standard_normal((n, T, *backend.frame_shape), dtype=np.float32) if backend.uses_rgb else None
    skel = rng.standard_normal((n, SKELETON_CHANNELS, T, NUM_JOINTS), dtype=np.float32) \
        if backend.uses_skeleton else None
    return rgb, skel


def streaming_steps(backend: Backend, frame: np.ndarray | None, skel: np.ndarray | None) -> tuple[Callable, Callable]:
    """(naive, cached) live steps: T frames re-encoded vs one new frame plus the cached T-1."""
    T = backend.num_frames
    window = None if frame is None else np.repeat(frame, T, axis=0)     # (T, 3, 224, 224)
    cache = np.zeros((1, T, FEATURE_DIM), dtype=np.float32)             # (1, T, 512)

    def naive():
        feats = None if window is None else backend.encode_frames(window)[None]  # (1, T, 512)
        return backend.classify(feats, skel)

    def cached():
        if frame is not None:
            cache[0, :-1] = cache[0, 1:]                   # drop the oldest frame's feature
            cache[0, -1] = backend.encode_frames(frame)[0]
        return backend.classify(cache if frame is not None else None, skel)
    return naive, cached


def bench_backend(backend: Backend, cfg: BenchConfig = BenchConfig()) -> dict:
    """All measurements of one backend as plain data."""
    rng = np.random.default_rng(cfg.seed)
    rgb1, skel1 = random_inputs(backend, 1, rng)
    frame = None if rgb1 is None else rgb1[0, :1]                      # (1, 3, 224, 224)
    feats1 = None if frame is None else rng.standard_normal((1, backend.num_frames, FEATURE_DIM), dtype=np.float32)
    out: dict = {"model": backend.source, "runtime": backend.runtime,
                 "precision": getattr(backend, "precision", "fp32"), "modality": backend.metadata.modality}
    if frame is not None:
        out["encoder_b1"] = latency_stats(time_calls(lambda: backend.encode_frames(frame), cfg))
    out["head_b1"] = latency_stats(time_calls(lambda: backend.classify(feats1, skel1), cfg))
    out["clips_per_s"] = {}
    for b in cfg.clip_batches:
        rgb, skel = random_inputs(backend, b, rng)
        stats = latency_stats(time_calls(lambda: backend.predict(rgb, skel), cfg, warmup=min(cfg.warmup, 1)))
        out["clips_per_s"][str(b)] = b / (stats["p50_ms"] / 1e3)
    naive, cached = streaming_steps(backend, frame, skel1)
    out["stream_naive"] = latency_stats(time_calls(naive, cfg))
    out["stream_cached"] = latency_stats(time_calls(cached, cfg))
    out["stream_speedup"] = out["stream_naive"]["p50_ms"] / out["stream_cached"]["p50_ms"]
    return out


def accuracy(backend: Backend, data) -> dict:
    """Top-1/top-5 of ``backend`` on a split part (``data``: a clip_data.ClipSource)."""
    from .clip_data import evaluate_backend
    metrics, _ = evaluate_backend(backend, data)
    return {"part": data.part, "clips": metrics["clips"], "top1": metrics["top1"], "top5": metrics["top5"]}


def run_bench(models: Sequence[str | os.PathLike], device: str = "cpu", threads: int | None = None,
              cfg: BenchConfig = BenchConfig(), progress: Callable[[str], None] | None = None,
              data=None) -> dict:
    """Bench every model in turn (same process, same inputs); returns the JSON report.

    ``data`` (a clip_data.ClipSource) adds each model's top-1/top-5 on that split part.
    """
    results = []
    for path in models:
        if progress:
            progress(str(path))
        backend = load_backend(path, device=device, threads=threads)
        log.info("benchmarking %r", backend)
        result = bench_backend(backend, cfg)
        if data is not None:
            result["accuracy"] = accuracy(backend, data)
        results.append(result)
        del backend
    return {"machine": machine_info(threads), "device": device, "config": asdict(cfg),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": results}


def write_report(report: dict, path: str | os.PathLike) -> Path:
    return atomic_write_json(path, report, indent=2)
