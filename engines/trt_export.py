"""``mgr export-trt``: checkpoint or ONNX -> ONNX at the asked precision -> engines -> parity.

The precision step is ONNX-to-ONNX and runs without TensorRT (``prepare_onnx``); the
build needs TensorRT and an NVIDIA GPU. After the build the engines are checked against
onnxruntime on the FP32 graphs: max abs logit difference and top-1 / top-5 agreement.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifacts import ArtifactError, ArtifactSet, artifact_set, siblings_from_names
from .export_config import OnnxExportConfig, check_out_folder
from .onnx_meta import read_metadata
from mgr.train.metadata import ArtifactMetadata
from .quantize import CalibrationData, QuantConfig, quantize_set
from .tensorrt_build import TrtBuildConfig, build_engine, import_tensorrt

log = logging.getLogger(__name__)


def fp32_onnx_set(source: str | os.PathLike, workdir: Path, export_cfg: OnnxExportConfig) -> ArtifactSet:
    """The FP32 ONNX graph set of a checkpoint (exported into ``workdir``) or of an ONNX file."""
    source = Path(source)
    if source.suffix == ".pt":
        from .export import export_checkpoint   # torch only for a checkpoint source
        return export_checkpoint(source, workdir / "model.onnx", export_cfg)
    if source.suffix != ".onnx":
        raise ValueError(f"{source}: export-trt takes a checkpoint (.pt) or an ONNX file (.onnx)")
    _, info = read_metadata(source)
    if info.precision != "fp32":
        raise ValueError(f"{source}: is a {info.precision} graph; give the FP32 export (or the checkpoint) "
                         f"and choose the precision with --fp16 / --int8")
    return siblings_from_names(source, info.graphs)


def prepare_onnx(fp32: ArtifactSet, workdir: Path, precision: str,
                 calib: CalibrationData | None = None) -> ArtifactSet:
    """The graph set TensorRT builds from: FP32 as is, FP16 by AutoCast, INT8 by explicit Q/DQ."""
    if precision == "fp32":
        return fp32
    if precision == "fp16":
        from .precision import convert_set_fp16
        return convert_set_fp16(fp32, workdir / "model.fp16.onnx")
    if precision == "int8":
        if calib is None:
            raise ValueError("--int8 needs calibration clips: --calib DATA")
        return quantize_set(fp32, workdir / "model.int8.onnx", calib, QuantConfig(target="tensorrt"))
    raise ValueError(f"unknown precision {precision!r}; choose one of fp32, fp16, int8")


def agreement(reference: np.ndarray, test: np.ndarray) -> dict:
    """Max abs logit difference, top-1 agreement, and mean overlap of the top-5 sets."""
    if reference.shape != test.shape:
        raise ValueError(f"logits shapes differ: {reference.shape} vs {test.shape}")
    top5_ref = np.argsort(-reference, axis=1)[:, :5]
    top5_test = np.argsort(-test, axis=1)[:, :5]
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top5_ref, top5_test)]
    return {"clips": int(len(reference)), "max_abs_diff": float(np.abs(reference - test).max()),
            "top1_agreement": float((reference.argmax(1) == test.argmax(1)).mean()),
            "top5_overlap": float(np.mean(overlap))}


def sample_clips(calib: CalibrationData | None, metadata: ArtifactMetadata, n: int = 8, seed: int = 0) -> tuple:
    """Clips for the parity check: the first calibration batch, else seeded random inputs."""
    if calib is not None:
        for rgb, skel in calib():
            return rgb, skel
    uses_rgb, uses_skeleton = metadata.uses_rgb, metadata.uses_skeleton
    rng, T = np.random.default_rng(seed), metadata.num_frames
    side = metadata.preprocessing.image_size
    rgb = rng.standard_normal((n, T, 3, side, side), dtype=np.float32) if uses_rgb else None
    skel = rng.standard_normal((n, 3, T, 25), dtype=np.float32) if uses_skeleton else None
    return rgb, skel


@dataclass(frozen=True)
class TrtExportResult:
    engines: ArtifactSet     # the engine files written
    sidecars: dict           # role -> sidecar dict
    parity: dict             # agreement() of engines vs onnxruntime FP32


def export_trt(source: str | os.PathLike, out: str | os.PathLike, cfg: TrtBuildConfig,
               calib: CalibrationData | None = None,
               export_cfg: OnnxExportConfig = OnnxExportConfig()) -> TrtExportResult:
    """Build the engine set for ``source`` at ``out`` (``model.engine`` + ``.encoder``/``.head``)."""
    import_tensorrt()   # fail at once, before minutes of export, if TensorRT is absent
    if Path(out).suffix != ".engine":
        raise ValueError(f"{out}: engine files end in .engine")
    check_out_folder(out)
    with tempfile.TemporaryDirectory(prefix="mgr-trt-") as tmp:
        fp32 = fp32_onnx_set(source, Path(tmp), export_cfg)
        graphs = prepare_onnx(fp32, Path(tmp), cfg.precision, calib)
        engines = artifact_set(out, graphs.encoder is not None)
        sidecars = {}
        for role in ("encoder", "head", "clip"):
            if getattr(graphs, role) is not None:
                log.info("building the %s engine (%s)", role, cfg.precision)
                sidecars[role] = build_engine(getattr(graphs, role), getattr(engines, role), cfg, engines.names())
        parity = parity_check(engines.clip, fp32.clip, calib)
    return TrtExportResult(engines, sidecars, parity)


def parity_check(engine: Path, onnx_fp32: Path, calib: CalibrationData | None) -> dict:
    from .backends import load_backend
    ref, trt_backend = load_backend(onnx_fp32), load_backend(engine, device="cuda")
    rgb, skel = sample_clips(calib, ref.metadata)
    if rgb is None and skel is None:
        raise ArtifactError("no sample clips for the parity check")
    reference = ref.predict(rgb, skel)
    result = agreement(reference, trt_backend.predict(rgb, skel))            # encoder + head engines
    result["whole_clip"] = agreement(reference, trt_backend.predict_whole(rgb, skel))
    result["inputs"] = "calibration clips" if calib is not None else "random inputs (give --calib DATA for real clips)"
    return result
