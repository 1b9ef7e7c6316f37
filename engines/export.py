"""Checkpoint -> ONNX graphs (frame encoder, clip head, whole clip), each self-describing.

torch's export-based ONNX exporter (``dynamo=True``, the default since torch 2.9) traces
each graph; the result gets our metadata, passes ``onnx.checker`` and is written
atomically (temporary file, then rename), one file at a time, the whole-clip graph last.
"""
from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import onnx
import torch
import torch.nn as nn

from mgr.train.checkpoint import load_model
from mgr.train.model import MicroGestureNet

from .artifacts import DYNAMIC_BATCH, ArtifactSet, TensorSpec, artifact_set, graph_io, parse_batch
from .export_config import OnnxExportConfig, check_out_folder, write_onnx
from .onnx_meta import GraphInfo, set_metadata
from mgr.train.metadata import ArtifactMetadata

log = logging.getLogger(__name__)

class _Graph(nn.Module):
    """One exportable view of the model: ``role`` picks the method, inputs are positional."""

    def __init__(self, model: MicroGestureNet, role: str, input_names: tuple[str, ...]):
        super().__init__()
        self.model, self.role, self.input_names = model, role, input_names

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.input_names, xs))
        if self.role == "encoder":
            return self.model.encode_frames(named["frames"])
        if self.role == "head":
            return self.model.classify(named.get("features"), named.get("skeleton"))
        return self.model(rgb=named.get("rgb"), skeleton=named.get("skeleton"))


def example_inputs(specs: tuple[TensorSpec, ...], batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random float32 tensors of the given specs with a concrete batch size."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*[batch if isinstance(d, str) else d for d in s.shape], generator=gen)
                 for s in specs)


def trace_graph(model: MicroGestureNet, meta: ArtifactMetadata, role: str,
                cfg: OnnxExportConfig) -> tuple[onnx.ModelProto, GraphInfo]:
    """Export one graph to an in-memory ModelProto (no metadata yet)."""
    batch = parse_batch(cfg.batch)
    inputs, outputs = graph_io(role, meta, batch)
    # a dynamic axis must not be traced at size 1, or torch.export specialises it
    args = example_inputs(inputs, batch=1 if batch == 1 else 2)
    dynamic = None
    if batch == DYNAMIC_BATCH:
        dim = torch.export.Dim(DYNAMIC_BATCH, min=1, max=4096)
        dynamic = (tuple({0: dim} for _ in inputs),)   # one entry: the *xs tuple
    module = _Graph(model, role, tuple(s.name for s in inputs)).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", category=UserWarning)   # axis-renaming chatter
        program = torch.onnx.export(module, args, dynamo=True, opset_version=cfg.opset,
                                    input_names=[s.name for s in inputs],
                                    output_names=[s.name for s in outputs],
                                    dynamic_shapes=dynamic, external_data=False, verbose=False)
    info = GraphInfo(role=role, inputs=inputs, outputs=outputs, graphs={})
    return program.model_proto, info


def export_model(model: MicroGestureNet, metadata: ArtifactMetadata, out: str | os.PathLike,
                 cfg: OnnxExportConfig = OnnxExportConfig()) -> ArtifactSet:
    """Write the graph set of ``model`` for ``--out out``; returns the paths written."""
    check_out_folder(out)
    model = model.eval()
    paths = artifact_set(out, model.uses_rgb)
    roles = [r for r in ("encoder", "head", "clip") if getattr(paths, r) is not None]
    for role in roles:   # the whole-clip graph, the entry point, is written last
        proto, info = trace_graph(model, metadata, role, cfg)
        info = GraphInfo(info.role, info.inputs, info.outputs, graphs=paths.names())
        write_onnx(set_metadata(proto, metadata, info), getattr(paths, role))
        log.info("wrote %s graph %s", role, getattr(paths, role))
    return paths


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike,
                      cfg: OnnxExportConfig = OnnxExportConfig()) -> ArtifactSet:
    """``mgr export-onnx``: checkpoint file -> graph set (FP32)."""
    model, metadata = load_model(checkpoint)
    return export_model(model, metadata, out, cfg)


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, cfg: OnnxExportConfig = OnnxExportConfig(),
                precision: str = "fp32", calib=None) -> ArtifactSet:
    """``mgr export-onnx``: FP32, FP16 (ModelOpt AutoCast) or INT8 (static QDQ, ``calib``) graph set."""
    from .precision import check_precision
    check_precision(precision)
    check_out_folder(out)
    if precision == "int8" and calib is None:
        raise ValueError("--int8 needs calibration clips: --calib DATA (a dataset folder or an .npz of arrays)")
    if precision == "fp32":
        return export_checkpoint(checkpoint, out, cfg)
    with tempfile.TemporaryDirectory(prefix="mgr-export-") as tmp:
        fp32 = export_checkpoint(checkpoint, Path(tmp) / "model.onnx", cfg)
        if precision == "fp16":
            from .precision import convert_set_fp16
            return convert_set_fp16(fp32, out)
        from .quantize import QuantConfig, quantize_set
        return quantize_set(fp32, out, calib, QuantConfig(target="cpu"))
