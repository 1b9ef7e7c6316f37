"""Metrics of the reference report: top-1, top-5, mean per-class accuracy, confusion matrix.

A class with no samples in the evaluated split is marked "no samples" and left out of the
mean per-class accuracy; it never crashes anything (iMiGUE class 19 has no test clip in
the cross-subject protocol).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write_json


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum())


def compute_metrics(logits: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """All numbers of an evaluation, as plain data."""
    logits_t, labels_t = torch.as_tensor(logits), torch.as_tensor(labels)
    n, num_classes = len(labels), len(class_names)
    pred = logits_t.argmax(dim=1).numpy() if n else np.zeros(0, dtype=int)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    support = cm.sum(axis=1)
    per_class = []
    for i, name in enumerate(class_names):
        acc = float(cm[i, i] / support[i]) if support[i] else None
        per_class.append({"index": i, "name": name, "support": int(support[i]), "correct": int(cm[i, i]),
                          "accuracy": acc, "note": "" if support[i] else "no samples"})
    accs = [c["accuracy"] for c in per_class if c["accuracy"] is not None]
    return {
        "clips": int(n),
        "top1": topk_correct(logits_t, labels_t, 1) / n if n else None,
        "top5": topk_correct(logits_t, labels_t, 5) / n if n else None,
        "mean_class_accuracy": float(np.mean(accs)) if accs else None,
        "classes_without_samples": [c["name"] for c in per_class if c["support"] == 0],
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }


def forward_batch(model: torch.nn.Module, batch: dict, device: torch.device, features=None) -> torch.Tensor:
    """Logits of one batch. ``features(rgb, keys)`` supplies cached frame features (frozen encoder)."""
    skeleton = batch["skeleton"].to(device, non_blocking=True) if "skeleton" in batch else None
    if features is not None and "frame_keys" in batch:
        core = model.module if hasattr(model, "module") else model
        return core.classify(features(batch["rgb"], batch["frame_keys"]), skeleton)
    rgb = batch["rgb"].to(device, non_blocking=True) if "rgb" in batch else None
    return model(rgb=rgb, skeleton=skeleton)


@torch.no_grad()
def predict_loader(model: torch.nn.Module, loader, device: torch.device,
                   features=None) -> tuple[np.ndarray, np.ndarray, float]:
    """Logits and labels over a loader; returns the mean cross-entropy too."""
    model.eval()
    all_logits, all_labels, loss_sum = [], [], 0.0
    for batch in loader:
        labels = batch["label"].to(device)
        logits = forward_batch(model, batch, device, features).float()
        loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
    if not all_logits:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), float("nan")
    logits, labels = torch.cat(all_logits).numpy(), torch.cat(all_labels).numpy()
    return logits, labels, loss_sum / max(1, len(labels))


def plot_confusion(metrics: dict, class_names: list[str], path: str | os.PathLike, title: str = "") -> Path:
    """Row-normalised confusion matrix PNG; empty classes are marked "no samples"."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    support = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
    fig, ax = plt.subplots(figsize=(13, 11))
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    labels = [f"{i + 1} {n[:22]}" for i, n in enumerate(class_names)]
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for i in np.where(support[:, 0] == 0)[0]:
        ax.text(len(labels) / 2, i, "no samples", ha="center", va="center", fontsize=6, color="crimson")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "normalised confusion matrix")
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_json(obj: dict, path: str | os.PathLike) -> Path:
    return atomic_write_json(path, obj, indent=2)
