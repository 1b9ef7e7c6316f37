"""onnxruntime backend for ``.onnx`` graph sets (FP32, FP16 or INT8 QDQ)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .artifacts import ArtifactError, siblings_from_names
from .backends import Backend, MissingRuntimeError
from .onnx_meta import GraphInfo, decode_props, read_metadata

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": ["CPUExecutionProvider"],
             "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise MissingRuntimeError("onnxruntime is not installed: pip install onnxruntime "
                                  "(or onnxruntime-gpu for CUDA)") from e
    return onnxruntime


# The clip head is ~1 ms of small ops: one thread is as fast as two, and leaves the
# encoder's pool alone (measured: 0.88 ms vs 0.76-1.11 ms with two threads).
HEAD_THREADS = 1


def session_options(threads: int | None):
    """Sequential execution, all graph optimisations, no spin-waiting.

    Spinning is off because the live loop alternates sessions (encoder, head) and other
    work (pose): idle threads of one session spinning on a 2-core machine starved the
    next one. Measured on 2 cores: encoder + head step 31.2 ms with spinning, 16.0 ms
    without, for an encoder alone 14.5 vs 14.9 ms.
    """
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return opts


class OrtGraph:
    """One onnxruntime session plus the graph description from its metadata."""

    def __init__(self, path: Path, role: str, device: str, threads: int | None):
        ort = import_onnxruntime()
        if not path.is_file():
            raise ArtifactError(f"{path}: {role} graph not found (exported graphs sit side by side; "
                                f"re-run mgr export-onnx)")
        providers = PROVIDERS[device]
        if providers[0] not in ort.get_available_providers():
            raise ValueError(f"device {device!r}: onnxruntime here offers {ort.get_available_providers()}; "
                             f"install onnxruntime-gpu for CUDA or use device 'cpu'")
        try:
            self.session = ort.InferenceSession(os.fspath(path), session_options(threads), providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own classes (InvalidProtobuf, Fail, ...)
            raise ArtifactError(f"{path}: onnxruntime cannot load this {role} graph (truncated or corrupt? "
                                f"export it again with mgr export-onnx): {e}") from e
        self.metadata, self.info = decode_props(self.session.get_modelmeta().custom_metadata_map, path)
        if self.info.role != role:
            raise ArtifactError(f"{path}: expected the {role} graph, found the {self.info.role} graph")
        self.fixed_batch = next((d for d in (s.shape[0] for s in self.info.inputs) if isinstance(d, int)), None)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(feeds.values())))
        if self.fixed_batch is None or n == self.fixed_batch:
            return self.session.run(None, feeds)[0]
        if self.fixed_batch != 1:
            raise ValueError(f"graph has fixed batch {self.fixed_batch}, got batch {n}")
        # a batch-1 graph runs larger batches one item at a time
        return np.concatenate([self.session.run(None, {k: v[i:i + 1] for k, v in feeds.items()})[0]
                               for i in range(n)])


class OrtBackend(Backend):
    runtime = "onnxruntime"

    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int | None = None):
        import_onnxruntime()
        metadata, info = read_metadata(path)
        super().__init__(metadata, path)
        self.paths = siblings_from_names(path, info.graphs)
        self.precision = info.precision
        self.encoder = OrtGraph(self.paths.encoder, "encoder", device, threads) if self.uses_rgb else None
        self.head = OrtGraph(self.paths.head, "head", device, HEAD_THREADS)
        for graph in (self.encoder, self.head):
            if graph is not None and graph.metadata.modality != metadata.modality:
                raise ArtifactError(f"{path}: sibling graphs come from different models "
                                    f"({graph.metadata.modality} vs {metadata.modality}); re-export")

    @property
    def graph_info(self) -> GraphInfo:
        return self.head.info

    def _encode(self, frames: np.ndarray) -> np.ndarray:
        return self.encoder.run({"frames": frames})

    def _classify(self, features: np.ndarray | None, skeleton: np.ndarray | None) -> np.ndarray:
        feeds = {}
        if features is not None:
            feeds["features"] = features
        if skeleton is not None:
            feeds["skeleton"] = skeleton
        return self.head.run(feeds)
