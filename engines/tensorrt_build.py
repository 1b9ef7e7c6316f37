"""ONNX graph set -> TensorRT engines, for TensorRT 10 and 11 (strongly typed networks).

Precision comes from the ONNX graph itself, never from builder flags (gone in TensorRT 11):
FP16 through ModelOpt AutoCast (``precision.convert_set_fp16``), INT8 through explicit
Q/DQ (``quantize.quantize_set`` with ``target="tensorrt"``). Each engine ``X.engine`` is a
plain serialized engine (``trtexec --loadEngine`` and polygraphy read it) with a sidecar
``X.engine.json``: our metadata, the TensorRT version, the GPU, the shape profile.

Security: an engine can carry plugin code that runs on load. Only load engines you built
or trust; ``mgr`` never downloads one.

Everything but ``build_engine`` is pure and tested without TensorRT.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from mgr.train.atomic import atomic_write_bytes, atomic_write_json

from .artifacts import ArtifactError, TensorSpec, check_metadata
from .backends import MissingRuntimeError
from .onnx_meta import GraphInfo, read_metadata
from mgr.train.metadata import ArtifactMetadata

log = logging.getLogger(__name__)

INSTALL_HINT = ("TensorRT is not installed. On a machine with an NVIDIA GPU: pip install 'mgr[trt]' "
                "(TensorRT wheels come from NVIDIA's index: pip install --extra-index-url "
                "https://pypi.nvidia.com 'mgr[trt]')")
SIDECAR_FORMAT = "mgr-tensorrt-sidecar"
SIDECAR_VERSION = 1
REBUILD = "rebuild it with `mgr export-trt MODEL --out {engine}` on this machine"


class EngineMismatchError(ArtifactError):
    """An engine built by another TensorRT version or for another GPU."""


def import_tensorrt():
    """The tensorrt module, or a MissingRuntimeError that says how to install it."""
    try:
        import tensorrt
    except ImportError as e:
        raise MissingRuntimeError(INSTALL_HINT) from e
    return tensorrt


_LOGGER = None


def trt_logger(trt):
    """One TensorRT logger per process: TensorRT warns when builders and runtimes get different ones."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


# ----------------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class BatchProfile:
    min: int = 1     # smallest clip batch the engine accepts
    opt: int = 1     # batch TensorRT tunes kernels for (the live loop runs batch 1)
    max: int = 32    # largest clip batch the engine accepts

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"batch profile needs 1 <= min <= opt <= max, got "
                             f"min={self.min} opt={self.opt} max={self.max}")

    @classmethod
    def parse(cls, text: str) -> "BatchProfile":
        """``"1,8,32"`` (min,opt,max) -> BatchProfile."""
        try:
            lo, opt, hi = (int(v) for v in text.split(","))
        except ValueError as e:
            raise ValueError(f"batch profile {text!r}: expected MIN,OPT,MAX, e.g. 1,8,32") from e
        return cls(lo, opt, hi)


def profile_shapes(role: str, inputs: tuple[TensorSpec, ...], profile: BatchProfile,
                   num_frames: int) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shape per input. The encoder sees T frames per clip, so its batch
    axis scales opt and max by T; a fixed-size axis stays fixed."""
    scale = num_frames if role == "encoder" else 1
    batches = (profile.min, profile.opt * scale, profile.max * scale)
    shapes = {}
    for spec in inputs:
        if isinstance(spec.shape[0], int):
            fixed = tuple(int(d) for d in spec.shape)
            shapes[spec.name] = (fixed, fixed, fixed)
        else:
            rest = tuple(int(d) for d in spec.shape[1:])
            shapes[spec.name] = tuple((b, *rest) for b in batches)
    return shapes


@dataclass(frozen=True)
class TrtBuildConfig:
    precision: str = "fp32"               # fp32 | fp16 | int8, carried by the ONNX graph
    workspace_mib: int = 2048             # builder scratch memory limit
    profile: BatchProfile = BatchProfile()  # clip batch sizes the engine serves
    timing_cache: Path | None = None      # read before and written after the build, if given
    tf32: bool = False                    # let FP32 layers use TF32 tensor cores (faster, ~1e-3 relative error)

    def __post_init__(self) -> None:
        from .precision import check_precision
        check_precision(self.precision)
        if self.workspace_mib < 16:
            raise ValueError(f"workspace must be >= 16 MiB, got {self.workspace_mib}")


# ----------------------------------------------------------------------------- sidecar
def sidecar_path(engine: str | os.PathLike) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def make_sidecar(metadata: ArtifactMetadata, info: GraphInfo, trt_version: str, device: dict,
                 profile: BatchProfile, source_onnx: str) -> dict:
    return {"format": SIDECAR_FORMAT, "sidecar_version": SIDECAR_VERSION, "metadata": metadata.to_dict(),
            "graph": info.to_props(), "tensorrt_version": trt_version, "device": device,
            "profile": {"min": profile.min, "opt": profile.opt, "max": profile.max},
            "source_onnx": source_onnx, "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_sidecar(engine: str | os.PathLike, sidecar: dict) -> Path:
    return atomic_write_json(sidecar_path(engine), sidecar, indent=2)


def read_sidecar(engine: str | os.PathLike) -> tuple[dict, GraphInfo, dict]:
    """(checked metadata, graph info, the whole sidecar) of an engine file."""
    path = sidecar_path(engine)
    try:
        side = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ArtifactError(f"{engine}: no sidecar {path.name}; engines need it for their metadata "
                            f"and TensorRT version: {REBUILD.format(engine=engine)}") from e
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: unreadable sidecar: {e}") from e
    if not isinstance(side, dict) or side.get("format") != SIDECAR_FORMAT:
        raise ArtifactError(f"{path}: not an mgr TensorRT sidecar")
    if int(side.get("sidecar_version", -1)) > SIDECAR_VERSION:
        raise ArtifactError(f"{path}: sidecar version {side['sidecar_version']} is newer than this mgr; upgrade mgr")
    meta = check_metadata(side.get("metadata"), path)
    try:
        info = GraphInfo.from_props(side["graph"])
    except (KeyError, TypeError) as e:
        raise ArtifactError(f"{path}: sidecar lacks the graph description ({e})") from e
    return meta, info, side


def check_compatible(side: dict, engine: str | os.PathLike, trt_version: str, device: dict) -> None:
    """Refuse an engine from another TensorRT version or GPU before deserialising it:
    TensorRT engines are tied to both, and a mismatch can crash instead of erroring."""
    built = side.get("tensorrt_version")
    if built != trt_version:
        raise EngineMismatchError(f"{engine}: built with TensorRT {built}, this machine has TensorRT "
                                  f"{trt_version}; {REBUILD.format(engine=engine)}")
    want, have = side.get("device") or {}, device
    for key in ("name", "compute_capability"):
        if want.get(key) != have.get(key):
            raise EngineMismatchError(f"{engine}: built for GPU {want.get('name')} (compute capability "
                                      f"{want.get('compute_capability')}), this GPU is {have.get('name')} "
                                      f"({have.get('compute_capability')}); {REBUILD.format(engine=engine)}")


def cuda_device(index: int = 0) -> dict:
    """Name and compute capability of a CUDA device, as stored in sidecars."""
    import torch
    if not torch.cuda.is_available():
        raise ValueError("TensorRT needs an NVIDIA GPU, and torch sees no CUDA device here")
    return {"name": torch.cuda.get_device_name(index),
            "compute_capability": list(torch.cuda.get_device_capability(index))}


# ----------------------------------------------------------------------------- build
def _parse_network(trt, builder, logger, onnx_path: Path):
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    # TensorRT 10: ask for strong typing; TensorRT 11: always strongly typed (flag kept, ignored)
    network = builder.create_network(0 if flag is None else 1 << int(flag))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.fspath(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"{onnx_path}: TensorRT's ONNX parser refused the graph: {errors}")
    return network, parser


def _builder_config(trt, builder, cfg: TrtBuildConfig, shapes: dict):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mib << 20)
    if not cfg.tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)   # on by default on Ampere and newer: FP32 should mean FP32
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if cfg.timing_cache is not None:
        data = cfg.timing_cache.read_bytes() if cfg.timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(data), False)  # ignore_mismatch=False
    return config


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, cfg: TrtBuildConfig,
                 graphs: dict) -> dict:
    """Build one engine from one ONNX graph with ``build_serialized_network``; atomic write
    of the engine, then its sidecar, then the timing cache. Returns the sidecar."""
    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    metadata, info = read_metadata(onnx_path)
    device = cuda_device(0)   # the builder builds for the current CUDA device (CUDA_VISIBLE_DEVICES picks it)
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    network, _parser = _parse_network(trt, builder, logger, onnx_path)
    config = _builder_config(trt, builder, cfg, profile_shapes(info.role, info.inputs, cfg.profile,
                                                               metadata.num_frames))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtifactError(f"{onnx_path}: TensorRT could not build an engine (see the TensorRT log above)")
    atomic_write_bytes(engine_path, bytes(serialized))
    info = GraphInfo(info.role, info.inputs, info.outputs, graphs=graphs, precision=info.precision)
    side = make_sidecar(metadata, info, trt.__version__, device, cfg.profile, onnx_path.name)
    side["engine_io"] = _engine_io(trt, logger, serialized)
    write_sidecar(engine_path, side)
    if cfg.timing_cache is not None:
        atomic_write_bytes(cfg.timing_cache, bytes(config.get_timing_cache().serialize()))
    return side


def _engine_io(trt, logger, serialized) -> list[dict]:
    """Names, modes, shapes (-1: dynamic) and dtypes of the built engine's I/O tensors."""
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    io = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
        io.append({"io": mode, "name": name, "shape": list(engine.get_tensor_shape(name)),
                   "dtype": str(engine.get_tensor_dtype(name)).rsplit(".", 1)[-1].lower()})
    return io


def engine_io(side: dict) -> list[dict]:
    """Input and output names, shapes, dtypes of an engine, for the CLI to print: the built
    engine's own (sidecar ``engine_io``), else the ONNX graph's declaration."""
    if side.get("engine_io"):
        return list(side["engine_io"])
    graph = side["graph"]
    return ([{"io": "input", **t} for t in graph["inputs"]] + [{"io": "output", **t} for t in graph["outputs"]])
