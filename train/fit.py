"""The training loop: AdamW + cosine annealing, per-epoch logs, atomic checkpoints, exact resume,
and multi-GPU / multi-node through torchrun (DDP with DistributedSampler).

Resume is exact at epoch granularity: every random choice of epoch e is drawn from
generators seeded by (seed, e), so a run resumed from ``last.pt`` after a crash ends
where an uninterrupted run with the same seed ends.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, WeightedRandomSampler

from .checkpoint import CheckpointError, atomic_write_bytes, build_metadata, read_checkpoint, save_checkpoint
from .classes import NUM_CLASSES, class_names
from .data import ClipDataset, DatasetConfig, fit_keypoint_stats, median_clip_seconds, scan_dataset
from .evaluate import compute_metrics, forward_batch, predict_loader, topk_correct
from .model import FusionConfig, MicroGestureNet, check_modality, load_imagenet_weights
from .preprocess import REFERENCE_SIZE, KeypointStats
from .split import SPLITS, cross_subject_split, load_split, random_split, save_split, select

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    modality: str = "fusion"              # fusion | rgb | skeleton (Table 1 rows)
    epochs: int = 20                      # the report's schedule
    batch_size: int = 16                  # clips per step (per process under torchrun)
    lr: float = 3e-4                      # AdamW learning rate
    weight_decay: float = 5e-4            # AdamW weight decay
    label_smoothing: float = 0.0          # cross-entropy label smoothing
    class_weights: bool = False           # inverse-frequency class weights in the loss
    balanced_sampler: bool = False        # sample clips with probability 1/class frequency
    amp: bool = False                     # mixed precision (CUDA only)
    workers: int = 2                      # DataLoader worker processes
    seed: int = 0                         # split, init, sampling and augmentation seed
    split: str = "random"                 # random (60/20/20) | cross-subject
    protocol: str | None = None           # cross-subject protocol JSON
    pretrained: str | None = None         # torchvision resnet18 state_dict path
    allow_download: bool = True           # try torchvision's ImageNet download without --pretrained
    freeze_backbone: bool = False         # keep the ResNet18 encoder fixed (faster on CPU)
    cache_dir: str | None = None          # decoded-frame cache folder
    device: str = "auto"                  # auto | cpu | cuda
    reference_size: tuple[int, int] = REFERENCE_SIZE  # skeleton reference frame (w, h)
    max_steps_per_epoch: int | None = None  # cap steps (smoke tests, benchmarks)


StepCallback = Callable[[str, dict], None]


def _dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {cfg.device!r}; choose auto, cpu or cuda")
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def prepare_split(clips, out: Path, cfg: TrainConfig, split_file: str | None) -> dict:
    """Reuse RUN/split.json (or --split-file); otherwise make the split and save it."""
    path = out / "split.json"
    if split_file:
        split = load_split(split_file)
    elif path.exists():
        split = load_split(path)
    elif cfg.split == "random":
        split = random_split(clips, cfg.seed)
    elif cfg.split == "cross-subject":
        if not cfg.protocol:
            raise ValueError("--split cross-subject needs --protocol (the official imigue_cross_subject.json)")
        split = cross_subject_split(clips, cfg.protocol, cfg.seed)
    else:
        raise ValueError(f"unknown split {cfg.split!r}; choose one of {', '.join(SPLITS)}")
    if _dist_info()[0] == 0:
        save_split(split, path)
    return split


def build_loader(ds: ClipDataset, cfg: TrainConfig, train: bool, epoch: int, device: torch.device,
                 world: int, rank: int) -> DataLoader:
    ds.set_epoch(epoch)
    sampler = None
    if train:
        g = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        if world > 1:
            sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
            sampler.set_epoch(epoch)
        elif cfg.balanced_sampler:
            counts = np.bincount([c.label for c in ds.clips], minlength=NUM_CLASSES)
            weights = [1.0 / counts[c.label] for c in ds.clips]
            sampler = WeightedRandomSampler(weights, len(ds), replacement=True, generator=g)
        else:
            sampler = RandomSampler(ds, generator=g)
    return DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, shuffle=False,
                      num_workers=cfg.workers, pin_memory=device.type == "cuda", drop_last=False)


def loss_function(cfg: TrainConfig, train_clips, device: torch.device) -> nn.Module:
    weight = None
    if cfg.class_weights:
        counts = np.bincount([c.label for c in train_clips], minlength=NUM_CLASSES).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / (NUM_CLASSES * np.maximum(counts, 1)), 0.0)
        weight = torch.tensor(w, dtype=torch.float32, device=device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def build_model(cfg: TrainConfig) -> tuple[MicroGestureNet, str]:
    check_modality(cfg.modality)
    model = MicroGestureNet(FusionConfig(modality=cfg.modality))
    source = load_imagenet_weights(model, cfg.pretrained, cfg.allow_download)
    if cfg.freeze_backbone and model.rgb is not None:
        model.rgb.encoder.requires_grad_(False)
    return model, source


def _set_train_mode(model: MicroGestureNet, cfg: TrainConfig) -> None:
    model.train()
    if cfg.freeze_backbone and model.rgb is not None:
        model.rgb.encoder.eval()  # frozen BatchNorm statistics too


class FrozenFeatureCache:
    """Features of a frozen frame encoder, computed once per frame and reused every epoch.

    With ``--freeze-backbone`` the encoder is a fixed function of a center-cropped frame, so
    encoding a frame twice is waste (the linear-probe trick); this makes CPU training of the
    fusion head and attention cost about one encoder pass per distinct frame.
    """

    def __init__(self, model: MicroGestureNet, device: torch.device):
        self.model, self.device, self.store = model, device, {}

    @torch.no_grad()
    def __call__(self, rgb: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        N, T = keys.shape
        flat = keys.flatten().tolist()
        todo: dict[int, int] = {}
        for j, k in enumerate(flat):
            if k not in self.store and k not in todo:
                todo[k] = j
        if todo:
            frames = rgb.flatten(0, 1)[list(todo.values())].to(self.device)   # (M, 3, 224, 224)
            self.model.rgb.encoder.eval()
            for k, f in zip(todo, self.model.encode_frames(frames)):
                self.store[k] = f
        return torch.stack([self.store[k] for k in flat]).view(N, T, -1)   # (N, T, 512)


@torch.no_grad()
def center_frozen_features(model: MicroGestureNet, ds: ClipDataset, device: torch.device, clips: int = 64) -> None:
    """Subtract the mean frame feature of (up to ``clips``) training clips inside the encoder.

    A frozen encoder's pooled ReLU features are all positive and nearly constant; fed to
    AdamW they act like 512 bias inputs and make the fusion head unstable. Centering is
    folded into ``encode_frames`` (buffers ``feature_mean``), so exports carry it.
    """
    model.rgb.encoder.eval()
    idx = np.linspace(0, len(ds) - 1, min(clips, len(ds))).astype(int)
    feats = [model.rgb.encoder(ds[int(i)]["rgb"].to(device)) for i in idx]   # (T, 512) each
    model.rgb.feature_mean.copy_(torch.cat(feats).mean(dim=0))


def train_one_epoch(model, loader, optimizer, criterion, scaler, device, cfg, callback, epoch,
                    features: FrozenFeatureCache | None = None) -> dict:
    core = model.module if hasattr(model, "module") else model
    _set_train_mode(core, cfg)
    n = correct = 0
    loss_sum, t0 = 0.0, time.perf_counter()
    total = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    for step, batch in enumerate(loader):
        if step >= total:
            break
        labels = batch["label"].to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=cfg.amp and device.type == "cuda"):
            logits = forward_batch(model, batch, device, features)
            loss = criterion(logits.float(), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"epoch {epoch} step {step}: loss is {loss.item()}; lower --lr or check the data")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        n += len(labels)
        loss_sum += float(loss.detach()) * len(labels)
        correct += topk_correct(logits.detach().float(), labels, 1)
        if callback:
            callback("step", {"epoch": epoch, "step": step + 1, "steps": total, "loss": float(loss.detach()),
                              "clips_per_s": n / max(1e-9, time.perf_counter() - t0)})
    secs = time.perf_counter() - t0
    return {"train_loss": loss_sum / max(1, n), "train_top1": correct / max(1, n),
            "train_seconds": secs, "train_clips_per_s": n / max(1e-9, secs), "train_clips": n}


def _write_json(path: Path, obj: dict) -> None:
    text = json.dumps(obj, indent=2)
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(text))


def _append_log(out: Path, row: dict) -> None:
    with open(out / "log.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    tmp = out / ".log.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out / "log.csv")


def _trim_log(out: Path, upto_epoch: int) -> None:
    """On resume, drop log rows of epochs that the checkpoint does not cover."""
    f = out / "log.jsonl"
    if f.exists():
        rows = [line for line in f.read_text().splitlines() if line.strip() and json.loads(line)["epoch"] < upto_epoch]
        f.write_text("".join(r + "\n" for r in rows))


@dataclass
class RunState:
    """What a resumed run needs beyond the weights (stored as plain data in last.pt)."""
    epoch: int = 0                 # next epoch to run
    best_top1: float = -1.0
    best_epoch: int = -1


def _resume(out: Path, model, optimizer, scheduler, scaler) -> tuple[RunState, KeypointStats | None]:
    payload = read_checkpoint(out / "last.pt")
    ts = payload.get("training_state")
    if not isinstance(ts, dict) or not {"epoch", "optimizer", "scheduler", "best_top1", "best_epoch"} <= set(ts):
        raise CheckpointError(f"{out / 'last.pt'}: holds no training state (a best.pt copied over it?); "
                              "cannot resume this run")
    model.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(ts["optimizer"])
    scheduler.load_state_dict(ts["scheduler"])
    if ts.get("scaler"):
        scaler.load_state_dict(ts["scaler"])
    stats = KeypointStats.from_dict(payload["metadata"]["keypoint_stats"])
    return RunState(int(ts["epoch"]), float(ts["best_top1"]), int(ts["best_epoch"])), stats


def _evaluate_val(model, val_ds, cfg, epoch, device, rank, features=None) -> dict:
    if val_ds is None or rank != 0:
        return {}
    t0 = time.perf_counter()
    logits, labels, loss = predict_loader(model, build_loader(val_ds, cfg, False, epoch, device, 1, 0), device,
                                          features)
    m = compute_metrics(logits, labels, class_names())
    return {"val_loss": loss, "val_top1": m["top1"], "val_top5": m["top5"],
            "val_mean_class_accuracy": m["mean_class_accuracy"], "eval_seconds": time.perf_counter() - t0}


def fit(data_root: str, out: str | os.PathLike, cfg: TrainConfig, keypoints_root: str | None = None,
        resume: bool = False, split_file: str | None = None, callback: StepCallback | None = None) -> dict:
    """Train one modality. Writes RUN/{split.json, log.csv, log.jsonl, last.pt, best.pt}."""
    rank, world, local_rank = _dist_info()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
    device = _device(cfg, local_rank)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if resume and not (out / "last.pt").exists():
        raise ValueError(f"{out}: nothing to resume (no last.pt)")
    if not resume and (out / "last.pt").exists():
        raise ValueError(f"{out}: already holds a run (last.pt); pass --resume to continue it or choose another --out")
    torch.manual_seed(cfg.seed)
    if rank == 0 and not resume:
        _write_json(out / "train_config.json", {**asdict(cfg), "data": str(data_root), "keypoints": keypoints_root})
        from .bench import machine_info
        _write_json(out / "environment.json", {**machine_info(), "world_size": world, "device": str(device)})
    index = scan_dataset(data_root, keypoints_root)
    split = prepare_split(index.clips, out, cfg, split_file)
    train_clips, val_clips = select(index.clips, split, "train"), select(index.clips, split, "val")
    model, weights_source = build_model(cfg)
    if callback:
        callback("info", {"weights": weights_source, "train_clips": len(train_clips), "val_clips": len(val_clips),
                          "layout": index.layout, "problems": index.problems})
    model.to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp and device.type == "cuda")
    state, stats = RunState(), None
    if resume:
        state, stats = _resume(out, model, optimizer, scheduler, scaler)
        _trim_log(out, state.epoch) if rank == 0 else None
    if stats is None:
        stats = (fit_keypoint_stats(train_clips, cfg.reference_size) if model.uses_skeleton
                 else KeypointStats.identity(cfg.reference_size))
    meta_args = dict(cfg=model.cfg, class_names=class_names(), reference_size=cfg.reference_size,
                     keypoint_stats=stats, clip_seconds=median_clip_seconds(train_clips),
                     train_config={**asdict(cfg), "data": str(data_root), "weights": weights_source,
                                   "split": split["kind"], "world_size": world})
    cache_features = cfg.freeze_backbone and model.uses_rgb and world == 1
    features = FrozenFeatureCache(model, device) if cache_features else None
    ds_cfg = DatasetConfig(model.uses_rgb, model.uses_skeleton, True, stats, cfg.reference_size,
                           seed=cfg.seed, cache_dir=cfg.cache_dir, augment=not cache_features,
                           frame_keys=cache_features)
    train_ds = ClipDataset(train_clips, ds_cfg)
    val_ds = ClipDataset(val_clips, replace(ds_cfg, train=False)) if val_clips else None
    if cfg.freeze_backbone and model.uses_rgb and not resume:
        center_frozen_features(model, train_ds, device)
    criterion = loss_function(cfg, train_clips, device)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None) \
        if world > 1 else model
    for epoch in range(state.epoch, cfg.epochs):
        torch.manual_seed(cfg.seed * 1000 + epoch)  # dropout of this epoch, independent of the past
        loader = build_loader(train_ds, cfg, True, epoch, device, world, rank)
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
               **train_one_epoch(ddp, loader, optimizer, criterion, scaler, device, cfg, callback, epoch, features)}
        scheduler.step()
        row.update(_evaluate_val(model, val_ds, cfg, epoch, device, rank, features))
        score = row.get("val_top1", row["train_top1"])
        improved = score > state.best_top1
        if improved:
            state.best_top1, state.best_epoch = score, epoch
        state.epoch = epoch + 1
        if rank == 0:
            _save_epoch(out, model, meta_args, row, state, optimizer, scheduler, scaler, improved)
        if world > 1:
            dist.barrier()
        if callback:
            callback("epoch", row)
    if world > 1:
        _record_rank_agreement(model, out, rank, world)
    return {"out": str(out), "best_epoch": state.best_epoch, "best_val_top1": state.best_top1,
            "weights": weights_source, "epochs": cfg.epochs}


def _record_rank_agreement(model: nn.Module, out: Path, rank: int, world: int) -> None:
    """Gather a checksum of every rank's parameters; DDP keeps them identical, and ddp_check.json shows it.
    (BatchNorm running statistics are per-rank between DDP's buffer broadcasts, so they are left out.)"""
    flat = torch.cat([p.detach().double().flatten().cpu() for p in model.parameters()])
    mine = torch.tensor([flat.sum().item(), flat.abs().sum().item()], dtype=torch.float64)
    gathered = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine.to(next(model.parameters()).device) if dist.get_backend() == "nccl" else mine)
    if rank == 0:
        sums = [g.cpu().tolist() for g in gathered]
        (out / "ddp_check.json").write_text(json.dumps({"world_size": world, "checksums": sums,
                                                        "agree": all(s == sums[0] for s in sums)}))


def _save_epoch(out, model, meta_args, row, state, optimizer, scheduler, scaler, improved) -> None:
    """best.pt, then the log row, then last.pt: the resume point is written last, so a crash
    anywhere in between re-runs the epoch and rewrites the same best.pt and log row."""
    metrics = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))}
    meta = build_metadata(**meta_args, metrics=metrics)
    if improved:
        save_checkpoint(out / "best.pt", model, meta)
    _append_log(out, row)
    training_state = {"epoch": state.epoch, "best_top1": state.best_top1, "best_epoch": state.best_epoch,
                      "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "scaler": scaler.state_dict() if scaler.is_enabled() else {}}
    save_checkpoint(out / "last.pt", model, meta, training_state)
