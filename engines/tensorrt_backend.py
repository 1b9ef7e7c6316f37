"""TensorRT backend for ``.engine`` sets: named tensor addresses and ``execute_async_v3``.

Device buffers are torch CUDA tensors (torch is already a dependency; no pycuda).
The sidecar is checked (TensorRT version, GPU) before any engine byte is deserialised.
Engines can carry plugins: load only engines you built or trust.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .artifacts import ArtifactError, siblings_from_names
from .backends import Backend
from .tensorrt_build import (EngineMismatchError, REBUILD, check_compatible, cuda_device, import_tensorrt,
                             read_sidecar, trt_logger)

log = logging.getLogger(__name__)


def _torch_dtype(trt, dtype):
    import torch
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
             trt.DataType.INT32: torch.int32, trt.DataType.INT8: torch.int8}
    if dtype not in table:
        raise ArtifactError(f"engine I/O dtype {dtype} is not supported by mgr's TensorRT backend")
    return table[dtype]


class TrtGraph:
    """One deserialised engine with one execution context."""

    def __init__(self, path: Path, role: str, device_index: int = 0):
        import torch
        trt = import_tensorrt()
        self.trt, self.torch = trt, torch
        if not path.is_file():
            raise ArtifactError(f"{path}: {role} engine not found (engines sit side by side; re-run mgr export-trt)")
        self.metadata, self.info, side = read_sidecar(path)
        if self.info.role != role:
            raise ArtifactError(f"{path}: holds the {self.info.role} graph, expected the {role} graph; "
                                f"{REBUILD.format(engine=path)}")
        self.device = torch.device("cuda", device_index)
        check_compatible(side, path, trt.__version__, cuda_device(device_index))
        fixed = next((d for d in (t.shape[0] for t in self.info.inputs) if isinstance(d, int)), None)
        scale = self.metadata.num_frames if role == "encoder" else 1
        self.min_batch = fixed or int(side["profile"]["min"])
        self.max_batch = fixed or int(side["profile"]["max"]) * scale
        self.path = path
        self.runtime = trt.Runtime(trt_logger(trt))
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise EngineMismatchError(f"{path}: TensorRT could not deserialise the engine; "
                                      f"{REBUILD.format(engine=path)}")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)   # TensorRT syncs extra work on the legacy default stream
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def _run_once(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        keep = []   # device tensors must outlive the asynchronous execution
        for name, arr in feeds.items():
            t = torch.from_numpy(arr).to(self.device, _torch_dtype(self.trt, self.engine.get_tensor_dtype(name)))
            if not self.context.set_input_shape(name, tuple(t.shape)):
                raise ArtifactError(f"{self.path}: input {name!r} of shape {tuple(t.shape)} is outside the "
                                    f"engine's shape profile (batch {self.min_batch}..{self.max_batch}); rebuild "
                                    f"with mgr export-trt --profile 1,OPT,MAX")
            self.context.set_tensor_address(name, t.data_ptr())
            keep.append(t)
        outs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outs[name] = torch.empty(shape, dtype=_torch_dtype(self.trt, self.engine.get_tensor_dtype(name)),
                                     device=self.device)
            self.context.set_tensor_address(name, outs[name].data_ptr())
        self.stream.wait_stream(torch.cuda.current_stream(self.device))   # the input copies land first
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError(f"{self.path}: TensorRT execute_async_v3 failed (see the TensorRT log)")
        self.stream.synchronize()
        return outs[self.outputs[0]].float().cpu().numpy()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(feeds.values())))
        step = self.max_batch  # batches beyond the profile (or a fixed batch) run in chunks
        return np.concatenate([self._run_once({k: v[i:i + step] for k, v in feeds.items()})
                               for i in range(0, n, step)])


class TensorRTBackend(Backend):
    runtime = "tensorrt"

    def __init__(self, path: str | os.PathLike, device: str = "cuda"):
        import_tensorrt()
        if device != "cuda":
            log.info("TensorRT runs on the GPU; device %r ignored", device)
        metadata, info, _ = read_sidecar(path)
        super().__init__(metadata, path)
        log.warning("loading TensorRT engine %s: engines can carry plugin code; load only engines you built or trust",
                    path)
        self.paths = siblings_from_names(path, info.graphs)
        self.precision = info.precision
        self.encoder = TrtGraph(self.paths.encoder, "encoder") if self.uses_rgb else None
        self.head = TrtGraph(self.paths.head, "head")
        for graph in (self.encoder, self.head):
            if graph is not None and graph.metadata.modality != self.metadata.modality:
                raise ArtifactError(f"{graph.path}: a {graph.metadata.modality} engine beside a "
                                    f"{self.metadata.modality} one; the set was mixed by two builds: "
                                    f"{REBUILD.format(engine=path)}")

    def predict_whole(self, frames: np.ndarray | None, skeleton: np.ndarray | None) -> np.ndarray:
        """Logits from the single whole-clip engine (the export's parity check covers it too)."""
        clip = TrtGraph(self.paths.clip, "clip")
        given = {"rgb": frames, "skeleton": skeleton}
        return clip.run({t.name: given[t.name] for t in clip.info.inputs})

    def _encode(self, frames: np.ndarray) -> np.ndarray:
        return self.encoder.run({"frames": frames})

    def _classify(self, features: np.ndarray | None, skeleton: np.ndarray | None) -> np.ndarray:
        feeds = {k: v for k, v in (("features", features), ("skeleton", skeleton)) if v is not None}
        return self.head.run(feeds)
