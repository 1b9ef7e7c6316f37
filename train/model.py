"""The two-stream micro-gesture model of the reference report and its two ablations.

RGB stream: torchvision ResNet18, one frame at a time (512-d), then temporal attention
over the T frames. Skeleton stream: ST-GCN (Yan et al., AAAI 2018), 3 blocks over the
Body_25 graph, 128-d. Fusion head: concat (640) -> 512 -> ReLU -> Dropout 0.3 -> 32.

Every stream has ``forward_features``; heads are their own modules, so the frame encoder
and the clip head can be exported as separate graphs (README "Architecture", live feature caching).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torchvision

from .classes import NUM_CLASSES
from .layout import NUM_JOINTS, spatial_partition_adjacency
from .preprocess import DEFAULT as DEFAULT_PREPROCESSING

log = logging.getLogger(__name__)

MODALITIES = ("fusion", "rgb", "skeleton")
RGB_DIM = 512
SKELETON_DIM = 128


def check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    return modality


@dataclass(frozen=True)
class STGCNConfig:
    in_channels: int = 3                           # x, y, confidence
    channels: tuple[int, ...] = (64, 128, 128)     # one entry per ST-GCN block
    temporal_kernel: int = 3                       # T=4 is short: 3 rather than the paper's 9
    dropout: float = 0.0                           # inside each block, after the temporal conv
    edge_importance: bool = True                   # learnable edge weights (ST-GCN section 3.5)


@dataclass(frozen=True)
class FusionConfig:
    modality: str = "fusion"                       # fusion | rgb | skeleton
    num_classes: int = NUM_CLASSES                 # 32 iMiGUE classes
    num_frames: int = DEFAULT_PREPROCESSING.num_frames   # T
    hidden: int = 512                              # head hidden width (640 -> 512 -> 32)
    dropout: float = 0.3                           # head dropout
    attention_hidden: int = 128                    # temporal-attention scoring MLP width
    stgcn: STGCNConfig = field(default_factory=STGCNConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stgcn"]["channels"] = list(self.stgcn.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FusionConfig":
        d = dict(d)
        st = dict(d.pop("stgcn", {}))
        if "channels" in st:
            st["channels"] = tuple(st["channels"])
        return cls(stgcn=STGCNConfig(**st), **d)


# ----------------------------------------------------------------------------- RGB
class TemporalAttention(nn.Module):
    """Additive attention pooling over frames: a_t = softmax_t(w^T tanh(W f_t))."""

    def __init__(self, dim: int = RGB_DIM, hidden: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        # feats: (N, T, D)
        weights = torch.softmax(self.score(feats), dim=1)  # (N, T, 1)
        return (weights * feats).sum(dim=1)                # (N, D)


class RGBStream(nn.Module):
    def __init__(self, cfg: FusionConfig):
        super().__init__()
        backbone = torchvision.models.resnet18(weights=None)
        backbone.fc = nn.Identity()
        self.encoder = backbone
        self.attention = TemporalAttention(RGB_DIM, cfg.attention_hidden)
        # Per-channel standardisation of frame features: identity unless a frozen encoder's
        # features were standardised on the training frames (see fit.standardize_frozen_features).
        self.register_buffer("feature_mean", torch.zeros(RGB_DIM))
        self.register_buffer("feature_std", torch.ones(RGB_DIM))

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) -> (B, 512): the per-frame graph the live loop caches."""
        return (self.encoder(frames) - self.feature_mean) / self.feature_std

    def aggregate(self, frame_feats: torch.Tensor) -> torch.Tensor:
        """(N, T, 512) cached frame features -> (N, 512)."""
        return self.attention(frame_feats)

    def forward_features(self, rgb: torch.Tensor) -> torch.Tensor:
        N, T = rgb.shape[:2]
        feats = self.encode_frames(rgb.flatten(0, 1))  # (N*T, 512)
        feats = feats.view(N, T, -1)                   # (N, T, 512)
        return self.aggregate(feats)                   # (N, 512)


# ----------------------------------------------------------------------------- skeleton
class GraphConv(nn.Module):
    """Spatial graph convolution with K adjacency subsets (ST-GCN eq. 3)."""

    def __init__(self, in_ch: int, out_ch: int, num_subsets: int):
        super().__init__()
        self.k = num_subsets
        self.conv = nn.Conv2d(in_ch, out_ch * num_subsets, kernel_size=1)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        N, _, T, V = x.shape
        x = self.conv(x).view(N, self.k, -1, T, V)        # (N, K, C, T, V)
        return torch.einsum("nkctv,kvw->nctw", x, adj)    # (N, C, T, V)


class STGCNBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, num_subsets: int, t_kernel: int, dropout: float):
        super().__init__()
        self.gcn = GraphConv(in_ch, out_ch, num_subsets)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, (t_kernel, 1), padding=(t_kernel // 2, 0)),
            nn.BatchNorm2d(out_ch), nn.Dropout(dropout))
        self.residual = (nn.Identity() if in_ch == out_ch else
                         nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.BatchNorm2d(out_ch)))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return self.relu(self.tcn(self.gcn(x, adj)) + self.residual(x))


class SkeletonStream(nn.Module):
    """ST-GCN over Body_25: (N, 3, T, 25) -> (N, 128)."""

    def __init__(self, cfg: STGCNConfig):
        super().__init__()
        adj = torch.from_numpy(spatial_partition_adjacency())  # (3, 25, 25)
        self.register_buffer("adjacency", adj)
        self.data_bn = nn.BatchNorm1d(cfg.in_channels * NUM_JOINTS)
        chans = (cfg.in_channels, *cfg.channels)
        self.blocks = nn.ModuleList(
            STGCNBlock(chans[i], chans[i + 1], adj.shape[0], cfg.temporal_kernel, cfg.dropout)
            for i in range(len(cfg.channels)))
        self.edge_importance = nn.ParameterList(
            nn.Parameter(torch.ones_like(adj), requires_grad=cfg.edge_importance) for _ in self.blocks)
        self.out_dim = cfg.channels[-1]

    def forward_features(self, skeleton: torch.Tensor) -> torch.Tensor:
        N, C, T, V = skeleton.shape
        x = skeleton.permute(0, 3, 1, 2).reshape(N, V * C, T)   # (N, V*C, T)
        x = self.data_bn(x)
        x = x.view(N, V, C, T).permute(0, 2, 3, 1)              # (N, C, T, V)
        for block, importance in zip(self.blocks, self.edge_importance):
            x = block(x, self.adjacency * importance)
        return x.mean(dim=(2, 3))                                # (N, 128)


# ----------------------------------------------------------------------------- heads
class ClassifierHead(nn.Module):
    """Linear in -> hidden -> ReLU -> Dropout -> Linear hidden -> classes."""

    def __init__(self, in_dim: int, hidden: int, num_classes: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MicroGestureNet(nn.Module):
    """Fusion model or one of its ablations, by ``cfg.modality``."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        check_modality(cfg.modality)
        self.cfg = cfg
        self.rgb = RGBStream(cfg) if cfg.modality in ("fusion", "rgb") else None
        self.skeleton = SkeletonStream(cfg.stgcn) if cfg.modality in ("fusion", "skeleton") else None
        in_dim = (RGB_DIM if self.rgb is not None else 0) + \
                 (self.skeleton.out_dim if self.skeleton is not None else 0)
        self.head = ClassifierHead(in_dim, cfg.hidden, cfg.num_classes, cfg.dropout)

    @property
    def uses_rgb(self) -> bool:
        return self.rgb is not None

    @property
    def uses_skeleton(self) -> bool:
        return self.skeleton is not None

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) -> (B, 512). Only for modalities with an RGB stream."""
        if self.rgb is None:
            raise ValueError(f"modality {self.cfg.modality!r} has no RGB stream to encode frames")
        return self.rgb.encode_frames(frames)

    def classify(self, frame_feats: torch.Tensor | None, skeleton: torch.Tensor | None) -> torch.Tensor:
        """The clip head: cached (N, T, 512) frame features and/or (N, 3, T, 25) skeleton -> (N, 32)."""
        parts = []
        if self.rgb is not None:
            parts.append(self.rgb.aggregate(frame_feats))             # (N, 512)
        if self.skeleton is not None:
            parts.append(self.skeleton.forward_features(skeleton))
        return self.head(torch.cat(parts, dim=1))   # (N, 640 | 512 | 128) -> (N, 32)

    def forward(self, rgb: torch.Tensor | None = None, skeleton: torch.Tensor | None = None) -> torch.Tensor:
        feats = None
        if self.rgb is not None:
            if rgb is None:
                raise ValueError(f"modality {self.cfg.modality!r} needs an rgb input of shape (N, T, 3, 224, 224)")
            N, T = rgb.shape[:2]
            feats = self.encode_frames(rgb.flatten(0, 1)).view(N, T, -1)  # (N, T, 512)
        if self.skeleton is not None and skeleton is None:
            raise ValueError(f"modality {self.cfg.modality!r} needs a skeleton input of shape (N, 3, T, 25)")
        return self.classify(feats, skeleton)


def load_imagenet_weights(model: MicroGestureNet, path: str | None, allow_download: bool = True) -> str:
    """Put ImageNet ResNet18 weights into the RGB stream. Returns a description of the source.

    ``path``: a torchvision resnet18 state_dict (.pth), loaded with weights_only=True.
    Without a path, torchvision's own download is tried; failing that, random init, loudly.
    """
    if model.rgb is None:
        return "no RGB stream"
    if path:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - re-raised with the file named
            raise ValueError(f"{path}: not a loadable torchvision ResNet18 state_dict ({e})") from e
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = model.rgb.encoder.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"{path}: not a ResNet18 state_dict (missing {missing[:3]}, unexpected {unexpected[:3]})")
        return f"ImageNet weights from {path}"
    if allow_download:
        try:
            weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
            state = weights.get_state_dict(progress=False)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            model.rgb.encoder.load_state_dict(state, strict=False)
            return "ImageNet weights from torchvision (IMAGENET1K_V1)"
        except Exception as e:  # noqa: BLE001 - offline is an expected state, reported below
            log.warning("could not download ImageNet ResNet18 weights: %s", e)
    log.warning("RGB stream starts from RANDOM weights: results will not match the reference "
                "report. Pass --pretrained PATH (torchvision resnet18 state_dict) to fix this.")
    return "RANDOM init (no ImageNet weights): results will not match the report"
