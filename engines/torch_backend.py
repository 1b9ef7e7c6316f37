"""torch eager backend for ``.pt`` checkpoints (the reference the other runtimes match)."""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

from mgr.train.checkpoint import load_model

from .backends import Backend

log = logging.getLogger(__name__)


class TorchBackend(Backend):
    runtime = "torch"

    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int | None = None):
        model, metadata = load_model(path)
        super().__init__(metadata, path)
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device 'cuda' asked for {path}, but torch sees no CUDA GPU; use device 'cpu'")
        if threads is not None:
            # torch's thread pool is process-wide: this affects every torch call in the process
            torch.set_num_threads(threads)
        self.device = torch.device(device)
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
