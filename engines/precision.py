"""Reduced precision as an ONNX-to-ONNX step (TensorRT 11 has no FP16/INT8 builder flags).

FP16: NVIDIA ModelOpt AutoCast rewrites the graph to FP16 and keeps FP32 inputs and
outputs (``keep_io_types``), so callers feed the same arrays. The result runs in
onnxruntime on CPU too, which is how it is tested without a GPU. INT8: see ``quantize``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from .artifacts import ArtifactSet, artifact_set
from .backends import MissingRuntimeError
from .onnx_meta import GraphInfo, read_metadata, set_metadata

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
MODELOPT_HINT = "pip install 'nvidia-modelopt[onnx]' (or pip install 'mgr[trt]')"


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def _autocast():
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError as e:
        raise MissingRuntimeError(f"FP16 conversion needs NVIDIA ModelOpt's AutoCast: {MODELOPT_HINT} ({e})") from e
    return convert_to_mixed_precision


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike, graphs: dict | None = None) -> Path:
    """One FP32 graph -> FP16 graph with FP32 I/O, metadata kept (precision "fp16")."""
    from .export_config import write_onnx

    metadata, info = read_metadata(src)
    convert = _autocast()
    model = convert(onnx_path=os.fspath(src), low_precision_type="fp16", keep_io_types=True)
    info = GraphInfo(info.role, info.inputs, info.outputs, graphs=graphs or info.graphs, precision="fp16")
    return write_onnx(set_metadata(model, metadata, info), dst)


def convert_set_fp16(fp32: ArtifactSet, out: str | os.PathLike) -> ArtifactSet:
    """FP32 graph set -> FP16 graph set at ``out`` (every graph converted)."""
    paths = artifact_set(out, fp32.encoder is not None)
    for role in ("encoder", "head", "clip"):
        src = getattr(fp32, role)
        if src is not None:
            log.info("converting the %s graph to FP16 (ModelOpt AutoCast)", role)
            convert_fp16(src, getattr(paths, role), graphs=paths.names())
    return paths
