"""The training loop: AdamW + cosine annealing, per-epoch logs, atomic checkpoints, exact resume,
and multi-GPU / multi-node through torchrun (DDP with DistributedSampler).

Resume is exact at epoch granularity: every random choice of epoch e is drawn from
generators seeded by (seed, e), so a run resumed from ``last.pt`` after a crash ends
where an uninterrupted run with the same seed ends.
"""
from __future__ import annotations

import csv
import inspect
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

from .atomic import atomic_write, atomic_write_json
from .checkpoint import CheckpointError, build_metadata, read_checkpoint, save_checkpoint
from .background import BackgroundConfig, run_class_names, scan_with_background
from .classes import class_names
from .data import ClipDataset, DatasetConfig, fit_keypoint_stats, median_clip_seconds
from .device import torch_device
from .evaluate import compute_metrics, forward_batch, predict_loader, topk_correct
from .model import FusionConfig, MicroGestureNet, check_modality, load_imagenet_weights
from .preprocess import DEFAULT as DEFAULT_PREPROCESSING, KeypointStats, Preprocessing
from .split import (CROSS_SUBJECT_VAL_FRACTION, PARTS, SPLITS, cross_subject_split, load_protocol, load_split,
                    random_split, save_split, select)

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
    protocol: str | None = None           # cross-subject protocol JSON (None: the packaged official one)
    val_fraction: float = CROSS_SUBJECT_VAL_FRACTION  # cross-subject: train subjects' clips held out for
                                          # validation; 0 = train on all of them, no val (published protocol)
    pretrained: str | None = None         # torchvision resnet18 state_dict path
    allow_download: bool = True           # try torchvision's ImageNet download without --pretrained
    freeze_backbone: bool = False         # keep the ResNet18 encoder fixed (faster on CPU)
    cache_dir: str | None = None          # decoded-frame cache folder
    device: str = "auto"                  # auto | cpu | cuda
    reference_size: tuple[int, int] = DEFAULT_PREPROCESSING.reference_size  # skeleton reference frame (w, h)
    max_steps_per_epoch: int | None = None  # cap steps (smoke tests, benchmarks)
    background: bool = False              # add the learned "no gesture" class (index 32), cut from the gaps
                                          # between labelled intervals of official-layout videos
    background_clips: int | None = None   # how many background clips; None: a quarter of the labelled clips


StepCallback = Callable[[str, dict], None]


def _dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    """cpu, or cuda:LOCAL_RANK (no explicit index: under torchrun the rank picks it)."""
    return torch_device(cfg.device, indexed=False, rank=local_rank)


def validate_config(cfg: TrainConfig, world: int) -> None:
    """Every check that needs no data, so a bad command fails before it writes anything."""
    check_modality(cfg.modality)
    if cfg.split not in SPLITS:
        raise ValueError(f"unknown split {cfg.split!r}; choose one of {', '.join(SPLITS)}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueError(f"--epochs and --batch-size must be at least 1 (got {cfg.epochs}, {cfg.batch_size})")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {cfg.val_fraction}")
    if cfg.split != "cross-subject" and (cfg.protocol or cfg.val_fraction != CROSS_SUBJECT_VAL_FRACTION):
        raise ValueError("--protocol and --val-fraction apply to --split cross-subject only "
                         "(--split random is the report's fixed 60/20/20)")
    if cfg.protocol:
        load_protocol(cfg.protocol)
    if cfg.background_clips is not None and (not cfg.background or cfg.background_clips < 1):
        raise ValueError(f"--background-clips {cfg.background_clips}: needs --background and at least 1 clip")
    if cfg.pretrained and not Path(cfg.pretrained).is_file():
        raise ValueError(f"--pretrained {cfg.pretrained}: no such file (a torchvision resnet18 state_dict)")
    if cfg.balanced_sampler and world > 1:
        raise ValueError("--balanced-sampler is not supported with several processes (torchrun): DDP's "
                         "DistributedSampler shards clips uniformly; use --class-weights instead, or one process")


def _init_distributed(cfg: TrainConfig, world: int, local_rank: int) -> torch.device:
    """This process's device; under torchrun, also the process group (NCCL on CUDA, gloo on CPU).

    The CUDA device is set before the group is created: otherwise every NCCL rank of a node
    would use cuda:0.
    """
    device = _device(cfg, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            bind = {"device_id": device} if "device_id" in inspect.signature(dist.init_process_group).parameters else {}
            dist.init_process_group("nccl", **bind)
        else:
            dist.init_process_group("gloo")
    return device


def _check_run_folder(out: Path, resume: bool) -> None:
    if resume and not (out / "last.pt").exists():
        raise ValueError(f"{out}: nothing to resume (no last.pt)")
    if not resume and (out / "last.pt").exists():
        raise ValueError(f"{out}: already holds a run (last.pt); pass --resume to continue it or choose another --out")


def make_split(clips, cfg: TrainConfig) -> dict:
    if cfg.split == "random":
        return random_split(clips, cfg.seed)
    if cfg.split == "cross-subject":
        return cross_subject_split(clips, cfg.protocol, cfg.seed, cfg.val_fraction)
    raise ValueError(f"unknown split {cfg.split!r}; choose one of {', '.join(SPLITS)}")


def _split_differences(old: dict, new: dict) -> list[str]:
    diffs = [f"{k} {old.get(k)!r} (asked: {new.get(k)!r})" for k in ("kind", "seed") if old.get(k) != new.get(k)]
    if not diffs and new["kind"] == "cross-subject":
        old_vf = old.get("val_fraction", CROSS_SUBJECT_VAL_FRACTION)
        if old_vf != new["val_fraction"]:
            diffs.append(f"val_fraction {old_vf} (asked: {new['val_fraction']})")
    if not diffs and any(sorted(old[p]) != sorted(new[p]) for p in PARTS):
        diffs.append("other clips (another dataset, or another protocol)")
    return diffs


def prepare_split(clips, out: Path, cfg: TrainConfig, split_file: str | None, resume: bool = False) -> dict:
    """--split-file, else (resuming) RUN/split.json, else a new split; nothing is written here.

    A RUN/split.json left by an earlier attempt must equal the split asked for: reusing a
    stale one silently would train on other clips than the command says.
    """
    path = out / "split.json"
    if split_file:
        return load_split(split_file)
    if resume and path.exists():
        return load_split(path)
    split = make_split(clips, cfg)
    if path.exists():
        diffs = _split_differences(load_split(path), split)
        if diffs:
            raise ValueError(f"{path} was made with {'; '.join(diffs)}. Delete it, choose another --out, "
                             f"or pass --split-file {path} to reuse it on purpose")
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
            counts = np.bincount([c.label for c in ds.clips], minlength=len(run_class_names(cfg.background)))
            weights = [1.0 / counts[c.label] for c in ds.clips]
            sampler = WeightedRandomSampler(weights, len(ds), replacement=True, generator=g)
        else:
            sampler = RandomSampler(ds, generator=g)
    return DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, shuffle=False,
                      num_workers=cfg.workers, pin_memory=device.type == "cuda", drop_last=False)


def loss_function(cfg: TrainConfig, train_clips, device: torch.device) -> nn.Module:
    weight = None
    if cfg.class_weights:
        n = len(run_class_names(cfg.background))
        counts = np.bincount([c.label for c in train_clips], minlength=n).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / (n * np.maximum(counts, 1)), 0.0)
        weight = torch.tensor(w, dtype=torch.float32, device=device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def build_model(cfg: TrainConfig) -> tuple[MicroGestureNet, str]:
    check_modality(cfg.modality)
    model = MicroGestureNet(FusionConfig(modality=cfg.modality, num_classes=len(run_class_names(cfg.background))))
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
    n = correct = correct5 = 0
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
        correct5 += topk_correct(logits.detach().float(), labels, 5)
        if callback:
            callback("step", {"epoch": epoch, "step": step + 1, "steps": total, "loss": float(loss.detach()),
                              "clips_per_s": n / max(1e-9, time.perf_counter() - t0)})
    secs = time.perf_counter() - t0
    loss_sum, correct, correct5, n = _sum_over_ranks([loss_sum, correct, correct5, n], device)
    n = int(n)
    return {"train_loss": loss_sum / max(1, n), "train_top1": correct / max(1, n), "train_top5": correct5 / max(1, n),
            "train_seconds": secs, "train_clips_per_s": n / max(1e-9, secs), "train_clips": n}


def _sum_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Sums over all DDP ranks (each saw its own shard), so the log describes the whole epoch."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_json(path, obj, indent=2)


def _append_log(out: Path, row: dict) -> None:
    with open(out / "log.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]

    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
    atomic_write(out / "log.csv", write_csv)


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


def _resume(out: Path, model, optimizer, scheduler, scaler) -> tuple[RunState, Preprocessing]:
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
    prep = payload["metadata"].preprocessing      # the run keeps its own numbers and statistics
    return RunState(int(ts["epoch"]), float(ts["best_top1"]), int(ts["best_epoch"])), prep


def new_preprocessing(cfg: TrainConfig, model, train_clips) -> Preprocessing:
    """The preprocessing section of a new run: the defaults, its T and reference frame, and
    keypoint statistics fitted on its training clips (identity for a model without skeleton)."""
    prep = replace(DEFAULT_PREPROCESSING, num_frames=model.cfg.num_frames, reference_size=tuple(cfg.reference_size))
    stats = (fit_keypoint_stats(train_clips, prep) if model.uses_skeleton
             else KeypointStats.identity(prep.reference_size))
    return replace(prep, keypoint_stats=stats)


def _evaluate_val(model, val_ds, cfg, epoch, device, rank, features=None) -> dict:
    if val_ds is None or rank != 0:
        return {}
    t0 = time.perf_counter()
    logits, labels, loss = predict_loader(model, build_loader(val_ds, cfg, False, epoch, device, 1, 0), device,
                                          features)
    m = compute_metrics(logits, labels, run_class_names(cfg.background))
    return {"val_loss": loss, "val_top1": m["top1"], "val_top5": m["top5"],
            "val_mean_class_accuracy": m["mean_class_accuracy"], "eval_seconds": time.perf_counter() - t0}


def fit(data_root: str, out: str | os.PathLike, cfg: TrainConfig, keypoints_root: str | None = None,
        resume: bool = False, split_file: str | None = None, callback: StepCallback | None = None) -> dict:
    """Train one modality. Writes RUN/{train_config.json, environment.json, split.json, log.csv, log.jsonl,
    last.pt, best.pt}, but only once every check on the arguments and the data has passed."""
    rank, world, local_rank = _dist_info()
    validate_config(cfg, world)
    out = Path(out)
    _check_run_folder(out, resume)
    device = _init_distributed(cfg, world, local_rank)
    torch.manual_seed(cfg.seed)
    background = (BackgroundConfig(cfg.background_clips, seed=cfg.seed, uses_rgb=check_modality(cfg.modality) != "skeleton",
                                   uses_skeleton=cfg.modality != "rgb") if cfg.background else None)
    index = scan_with_background(data_root, keypoints_root, background)
    split = prepare_split(index.clips, out, cfg, split_file, resume)
    train_clips, val_clips = select(index.clips, split, "train"), select(index.clips, split, "val")
    if not train_clips:
        raise ValueError(f"the split has no training clips ({data_root})")
    model, weights_source = build_model(cfg)
    if callback:
        callback("info", {"weights": weights_source, "train_clips": len(train_clips), "val_clips": len(val_clips),
                          "layout": index.layout, "problems": index.problems})
    model.to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp and device.type == "cuda")
    if cfg.amp and device.type != "cuda":
        log.warning("--amp is for CUDA; on %s the run trains in full precision", device.type)
    if resume:
        state, prep = _resume(out, model, optimizer, scheduler, scaler)
    else:
        state, prep = RunState(), new_preprocessing(cfg, model, train_clips)
    meta_args = dict(cfg=model.cfg, class_names=run_class_names(cfg.background), preprocessing=prep,
                     clip_seconds=median_clip_seconds([c for c in train_clips if c.label < len(class_names())]),
                     train_config={**asdict(cfg), "data": str(data_root), "weights": weights_source,
                                   "split": split["kind"], "world_size": world})
    cache_features = cfg.freeze_backbone and model.uses_rgb and world == 1
    features = FrozenFeatureCache(model, device) if cache_features else None
    ds_cfg = DatasetConfig(model.uses_rgb, model.uses_skeleton, True, prep,
                           seed=cfg.seed, cache_dir=cfg.cache_dir, augment=not cache_features,
                           frame_keys=cache_features)
    train_ds = ClipDataset(train_clips, ds_cfg)
    val_ds = ClipDataset(val_clips, replace(ds_cfg, train=False)) if val_clips else None
    if cfg.freeze_backbone and model.uses_rgb and not resume:
        center_frozen_features(model, train_ds, device)
    criterion = loss_function(cfg, train_clips, device)
    if rank == 0:
        _write_run_files(out, cfg, data_root, keypoints_root, split, world, device, state if resume else None)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None) \
        if world > 1 else model
    for epoch in range(state.epoch, cfg.epochs):
        torch.manual_seed(cfg.seed * 1000 + epoch)  # dropout of this epoch, independent of the past
        loader = build_loader(train_ds, cfg, True, epoch, device, world, rank)
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
               **train_one_epoch(ddp, loader, optimizer, criterion, scaler, device, cfg, callback, epoch, features)}
        scheduler.step()
        row.update(_evaluate_val(model, val_ds, cfg, epoch, device, rank, features))
        improved = _update_best(state, row, epoch)
        state.epoch = epoch + 1
        if rank == 0:
            _save_epoch(out, model, meta_args, row, state, optimizer, scheduler, scaler, improved)
        if world > 1:
            dist.barrier()
        if callback:
            callback("epoch", row)
    if world > 1:
        _record_rank_agreement(model, out, rank, world)
    return {"out": str(out), "best_epoch": state.best_epoch,
            "best_val_top1": state.best_top1 if val_ds is not None else None,
            "weights": weights_source, "epochs": cfg.epochs}


def _update_best(state: RunState, row: dict, epoch: int) -> bool:
    """Best by validation top-1; without validation (e.g. --val-fraction 0) the best is the last epoch."""
    score = row.get("val_top1")
    improved = score is None or score > state.best_top1
    if improved:
        state.best_epoch = epoch
        state.best_top1 = state.best_top1 if score is None else score
    return improved


def _write_run_files(out: Path, cfg: TrainConfig, data_root, keypoints_root, split: dict, world: int,
                     device: torch.device, resumed: RunState | None) -> None:
    """The run's description, written once every check has passed (rank 0 only)."""
    out.mkdir(parents=True, exist_ok=True)
    if resumed is not None:
        _trim_log(out, resumed.epoch)
        return
    _write_json(out / "train_config.json", {**asdict(cfg), "data": str(data_root), "keypoints": keypoints_root})
    from .machine import machine_info
    _write_json(out / "environment.json", {**machine_info(), "world_size": world, "device": str(device)})
    save_split(split, out / "split.json")


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
