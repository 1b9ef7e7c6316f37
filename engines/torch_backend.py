"""torch eager backend for ``.pt`` checkpoints (the reference the other runtimes match)."""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

from mgr.train.checkpoint import load_model
from mgr.train.device import torch_device

from .backends import Backend

log = logging.getLogger(__name__)


class TorchBackend(Backend):
    runtime = "torch"

    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int | None = None):
        model, metadata = load_model(path)
        super().__init__(metadata, path)
        dev = torch_device(device, auto=False, indexed=False)   # no CUDA: a ValueError saying to use cpu
        if threads is not None:
            # torch's thread pool is process-wide: this affects every torch call in the process
            torch.set_num_threads(threads)
        self.device = dev
        self.model = model.to(self.device).eval()

    def _tensor(self, x: np.ndarray | None) -> torch.Tensor | None:
        return None if x is None else torch.from_numpy(x).to(self.device)

    @torch.inference_mode()
    def _encode(self, frames: np.ndarray) -> np.ndarray:
        return self.model.encode_frames(self._tensor(frames)).float().cpu().numpy()

    @torch.inference_mode()
    def _classify(self, features: np.ndarray | None, skeleton: np.ndarray | None) -> np.ndarray:
        logits = self.model.classify(self._tensor(features), self._tensor(skeleton))
        return logits.float().cpu().numpy()
