"""Static INT8 quantization (QDQ, per-channel weights) with onnxruntime, calibrated on clips.

``mgr export-onnx --int8 --calib DATA`` writes the same graph set as FP32 export, but the
frame encoder and the whole-clip graph carry QuantizeLinear/DequantizeLinear pairs. The
clip head stays FP32: it is a few hundred microseconds and holds the attention softmax and
the ST-GCN, where 8-bit activations cost accuracy for no measurable speed.

Calibration data is a callable returning a fresh iterable of preprocessed batches
``(rgb (N, T, 3, 224, 224) | None, skeleton (N, 3, T, 25) | None)``, the model's own inputs,
so calibration sees exactly what inference sees (real clips through train.preprocess).
The same QDQ graphs feed TensorRT's explicit quantization (``target="tensorrt"``:
symmetric signed activations, which TensorRT requires).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import onnx

from .artifacts import ArtifactSet, TensorSpec, artifact_set
from .onnx_meta import GraphInfo, read_metadata, set_metadata

log = logging.getLogger(__name__)

Batch = tuple["np.ndarray | None", "np.ndarray | None"]   # (rgb, skeleton), preprocessed
CalibrationData = Callable[[], Iterable[Batch]]
TARGETS = ("cpu", "tensorrt")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QUANTIZED_ROLES = ("encoder", "clip")
# ops given QDQ pairs; BatchNormalization (ST-GCN's data_bn and tcn) stays FP32: its rank-1
# weights have no per-channel axis, and onnxruntime only folds BN into a preceding Conv
OP_TYPES = ("Conv", "Gemm", "MatMul", "Add", "MaxPool", "Relu")


@dataclass(frozen=True)
class QuantConfig:
    target: str = "cpu"               # cpu: uint8 activations (x86 U8S8 kernels); tensorrt: symmetric int8
    per_channel: bool = True          # one weight scale per output channel
    calibrate_method: str = "minmax"  # minmax | entropy | percentile (onnxruntime calibrators)
    max_samples: int = 256            # calibration inputs per graph (frames for the encoder, clips otherwise)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"unknown quantization target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.calibrate_method not in CALIBRATION_METHODS:
            raise ValueError(f"unknown calibration method {self.calibrate_method!r}; "
                             f"choose one of {', '.join(CALIBRATION_METHODS)}")
        if self.max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {self.max_samples}")


def calibration_feeds(role: str, inputs: tuple[TensorSpec, ...], data: CalibrationData,
                      max_samples: int) -> Iterator[dict[str, np.ndarray]]:
    """Feed dicts for one graph from (rgb, skeleton) batches, at most ``max_samples`` items.

    Graphs exported with a fixed batch of 1 get one item per feed.
    """
    fixed_one = any(s.shape[0] == 1 for s in inputs)
    seen = 0
    for rgb, skeleton in data():
        if role == "encoder":
            if rgb is None:
                raise ValueError("calibrating the frame encoder needs RGB clips; the data gave none")
            N, T = rgb.shape[:2]
            feeds = {"frames": rgb.reshape(N * T, *rgb.shape[2:])}   # (N*T, 3, 224, 224)
        else:
            feeds = {"rgb": rgb, "skeleton": skeleton}
            feeds = {s.name: feeds[s.name] for s in inputs}
            if any(v is None for v in feeds.values()):
                raise ValueError(f"calibrating the {role} graph needs {', '.join(feeds)}; the data lacks one")
        feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds.items()}
        n = min(len(next(iter(feeds.values()))), max_samples - seen)
        step = 1 if fixed_one else n
        for i in range(0, n, step):
            yield {k: v[i:i + step] for k, v in feeds.items()}
        seen += n
        if seen >= max_samples:
            return
    if seen == 0:
        raise ValueError("calibration data is empty: give at least one clip")


def _reader(feeds: Iterator[dict[str, np.ndarray]]):
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    return _Reader()


def quantize_graph(src: Path, dst: Path, data: CalibrationData, cfg: QuantConfig) -> None:
    """Static QDQ quantization of one FP32 graph into ``dst`` (not atomic; see quantize_set)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    _, info = read_metadata(src)
    prepared = dst.with_name(dst.stem + ".prep.onnx")
    quant_pre_process(os.fspath(src), os.fspath(prepared), skip_symbolic_shape=False)
    tensorrt = cfg.target == "tensorrt"
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[cfg.calibrate_method]
    quantize_static(os.fspath(prepared), os.fspath(dst),
                    _reader(calibration_feeds(info.role, info.inputs, data, cfg.max_samples)),
                    quant_format=QuantFormat.QDQ, per_channel=cfg.per_channel,
                    activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=method, op_types_to_quantize=list(OP_TYPES),
                    extra_options={"ActivationSymmetric": tensorrt, "WeightSymmetric": True})
    prepared.unlink(missing_ok=True)


def quantize_set(fp32: ArtifactSet, out: str | os.PathLike, data: CalibrationData,
                 cfg: QuantConfig = QuantConfig()) -> ArtifactSet:
    """FP32 graph set -> INT8 graph set at ``out`` (encoder and clip quantized, head copied)."""
    from .export_config import write_onnx

    paths = artifact_set(out, fp32.encoder is not None)
    with tempfile.TemporaryDirectory(prefix="mgr-int8-") as tmp:
        for role in ("encoder", "head", "clip"):
            src = getattr(fp32, role)
            if src is None:
                continue
            metadata, info = read_metadata(src)
            staged = Path(tmp) / f"{role}.onnx"
            if role in QUANTIZED_ROLES:
                log.info("calibrating and quantizing the %s graph (%s)", role, cfg.calibrate_method)
                quantize_graph(src, staged, data, cfg)
            else:
                shutil.copyfile(src, staged)
            info = GraphInfo(info.role, info.inputs, info.outputs, graphs=paths.names(),
                             precision="int8" if role in QUANTIZED_ROLES else info.precision)
            write_onnx(set_metadata(onnx.load(os.fspath(staged)), metadata, info), getattr(paths, role))
    return paths


def arrays_calibration(rgb: np.ndarray | None, skeleton: np.ndarray | None, batch: int = 8) -> CalibrationData:
    """Calibration data from preprocessed arrays (N, T, 3, 224, 224) and (N, 3, T, 25)."""
    n = len(rgb) if rgb is not None else len(skeleton) if skeleton is not None else 0
    if n == 0:
        raise ValueError("calibration arrays are empty: give rgb and/or skeleton clips")

    def batches() -> Iterator[Batch]:
        for i in range(0, n, batch):
            yield (None if rgb is None else rgb[i:i + batch], None if skeleton is None else skeleton[i:i + batch])
    return batches


def npz_calibration(path: str | os.PathLike, batch: int = 8) -> CalibrationData:
    """Calibration data from an .npz holding preprocessed ``rgb`` and/or ``skeleton`` arrays."""
    try:
        with np.load(path, allow_pickle=False) as z:
            rgb = z["rgb"] if "rgb" in z.files else None
            skeleton = z["skeleton"] if "skeleton" in z.files else None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npz of calibration arrays: {e}") from e
    if rgb is None and skeleton is None:
        raise ValueError(f"{path}: holds neither 'rgb' nor 'skeleton' arrays")
    return arrays_calibration(rgb, skeleton, batch)
