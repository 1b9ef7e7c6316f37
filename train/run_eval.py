"""Evaluate a checkpoint on a split of a dataset, with the split file its run saved."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .checkpoint import load_model
from .background import BackgroundConfig, scan_with_background
from .data import ClipDataset, DatasetConfig
from .device import torch_device
from .evaluate import compute_metrics, plot_confusion, predict_loader, write_json
from .split import resolve_split, select


def resolve_device(device: str) -> torch.device:
    """``auto``: cuda when available, else cpu; otherwise cpu, cuda or cuda:N (train.device)."""
    return torch_device(device)


def evaluate_checkpoint(checkpoint: str, data_root: str, part: str = "test", out: str | None = None,
                        keypoints_root: str | None = None, split_file: str | None = None,
                        batch_size: int = 16, workers: int = 2, device: str = "cpu",
                        new_split: bool = False) -> dict:
    """Top-1/top-5/mean class accuracy, per-class table and confusion matrix of ``part``.

    The split comes from ``split_file``, else ``split.json`` beside the checkpoint. Without
    either it is an error, unless ``new_split`` asks for a fresh seeded random split (said so
    in the result): a silent new split could put training clips in the test part. Writes
    eval_<part>.json and confusion_<part>.png into ``out`` (default: the checkpoint's folder).
    """
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    dev = resolve_device(device)
    model, meta = load_model(checkpoint)
    model.to(dev)
    index = scan_with_background(data_root, keypoints_root, BackgroundConfig.from_train_config(
        meta.train_config, model.uses_rgb, model.uses_skeleton))
    if part == "all":
        clips, split_source = index.clips, "all clips"
    else:
        split, split_source = resolve_split(split_file or None, [Path(checkpoint).parent / "split.json"],
                                            fallback="random" if new_split else "error", clips=index.clips,
                                            seed=int(meta.train_config.get("seed", 0)))
        clips = select(index.clips, split, part)
    ds = ClipDataset(clips, DatasetConfig(model.uses_rgb, model.uses_skeleton, False, meta.preprocessing))
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, pin_memory=dev.type == "cuda")
    t0 = time.perf_counter()
    logits, labels, loss = predict_loader(model, loader, dev)
    metrics = compute_metrics(logits, labels, list(meta.class_names))
    metrics.update({"loss": loss, "part": part, "split_source": split_source, "checkpoint": str(checkpoint),
                    "modality": meta.modality, "eval_seconds": time.perf_counter() - t0,
                    "data": str(data_root)})
    out_dir = Path(out) if out else Path(checkpoint).parent
    write_json(metrics, out_dir / f"eval_{part}.json")
    plot_confusion(metrics, list(meta.class_names), out_dir / f"confusion_{part}.png",
                   f"{meta.modality} on {part} ({metrics['clips']} clips)")
    return metrics
