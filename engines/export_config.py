"""What an ONNX export is asked for, and where it may write: torch-free, so `mgr export-trt`
from an ONNX file and the runtime install never import the exporter (engines/export.py)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import onnx

from mgr.train.atomic import atomic_write

from .artifacts import parse_batch

MIN_OPSET = 18                      # the export-based exporter emits opset 18 and up
DEFAULT_OPSET = 18


@dataclass(frozen=True)
class OnnxExportConfig:
    opset: int = DEFAULT_OPSET      # ONNX opset of every graph
    batch: str = "dynamic"          # "1" (fixed batch) or "dynamic"

    def __post_init__(self) -> None:
        parse_batch(self.batch)
        max_opset = onnx.defs.onnx_opset_version()
        if not MIN_OPSET <= self.opset <= max_opset:
            raise ValueError(f"opset {self.opset} not supported; choose {MIN_OPSET}..{max_opset}")


def check_out_folder(out: str | os.PathLike) -> Path:
    """An output path in a missing folder is an error, not a silently created tree."""
    folder = Path(out).parent
    if not folder.is_dir():
        raise ValueError(f"output folder {folder} does not exist; create it first or choose another --out")
    return folder


def write_onnx(model_proto: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """``onnx.checker`` then an atomic write (a crash never leaves a half-written file)."""
    onnx.checker.check_model(model_proto)
    return atomic_write(path, lambda tmp: onnx.save_model(model_proto, tmp))
