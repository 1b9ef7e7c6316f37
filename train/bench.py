"""`mgr bench train`: training throughput (clips/s) per modality, with and without the frame cache."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from .fit import TrainConfig, fit


def bench_train(data: str, modalities: list[str], steps: int, batch_size: int, workers: int,
                epochs: int = 3, seed: int = 0) -> list[dict]:
    """Median clips/s over epochs 2..N of short runs (epoch 1 warms caches and allocators)."""
    results = []
    base = TrainConfig(epochs=epochs, batch_size=batch_size, workers=workers, seed=seed, allow_download=False,
                       max_steps_per_epoch=steps, device="cpu" if not torch.cuda.is_available() else "auto")
    for modality in modalities:
        for cached in ((False, True) if modality != "skeleton" else (False,)):
            tmp = Path(tempfile.mkdtemp(prefix="mgr-bench-"))
            try:
                cfg = replace(base, modality=modality, cache_dir=str(tmp / "cache") if cached else None)
                rows = []
                fit(data, tmp / "run", cfg, callback=lambda k, d: rows.append(d) if k == "epoch" else None)
                speeds = sorted(r["train_clips_per_s"] for r in rows[1:]) or [rows[0]["train_clips_per_s"]]
                results.append({"modality": modality, "frame_cache": cached,
                                "clips_per_s_median": speeds[len(speeds) // 2],
                                "clips_per_s_all": [r["train_clips_per_s"] for r in rows],
                                "steps_per_epoch": steps, "batch_size": batch_size, "workers": workers})
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return results


def bench_loader(data: str, batches: int, batch_size: int, workers: int, epochs: int = 3) -> list[dict]:
    """Clips/s of the RGB data pipeline alone (decode, resize, crop, normalise), with and without
    the decoded-frame cache: what a GPU-fed model waits for. Epoch 1 fills the cache."""
    from torch.utils.data import DataLoader

    from .data import ClipDataset, DatasetConfig, scan_dataset
    from .preprocess import DEFAULT
    import time
    clips = scan_dataset(data).clips
    out = []
    for cached in (False, True):
        tmp = Path(tempfile.mkdtemp(prefix="mgr-bench-cache-"))
        try:
            cfg = DatasetConfig(True, False, True, DEFAULT, cache_dir=str(tmp) if cached else None)
            ds = ClipDataset(clips, cfg)
            speeds = []
            for epoch in range(epochs):
                ds.set_epoch(epoch)
                loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
                t0, n = time.perf_counter(), 0
                for i, batch in enumerate(loader):
                    if i >= batches:
                        break
                    n += len(batch["label"])
                speeds.append(n / (time.perf_counter() - t0))
            later = sorted(speeds[1:]) or speeds
            out.append({"frame_cache": cached, "clips_per_s_median": later[len(later) // 2],
                        "clips_per_s_all": speeds, "batches": batches, "batch_size": batch_size, "workers": workers})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


