"""mgr metadata inside ONNX ``metadata_props``: one JSON-encoded entry per key.

Each key ``k`` of ``ArtifactMetadata.to_dict()`` becomes the property ``mgr.k`` (so Netron and
``onnx.load(...).metadata_props`` show them one by one; the preprocessing numbers are the JSON
object ``mgr.preprocessing``). Graph facts sit beside them:
``mgr.graph`` (clip | encoder | head), ``mgr.inputs`` / ``mgr.outputs`` (names, shapes,
dtypes), ``mgr.graphs`` (the sibling file names) and ``mgr.precision``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import onnx
from google.protobuf.message import DecodeError

from .artifacts import ArtifactError, TensorSpec, check_metadata
from mgr.train.metadata import ArtifactMetadata

PREFIX = "mgr."
GRAPH_KEYS = ("graph", "inputs", "outputs", "graphs", "precision")


@dataclass(frozen=True)
class GraphInfo:
    role: str                          # clip | encoder | head
    inputs: tuple[TensorSpec, ...]     # graph inputs, in order
    outputs: tuple[TensorSpec, ...]    # graph outputs, in order
    graphs: dict                       # sibling file names: {"clip", "encoder", "head"}
    precision: str = "fp32"            # fp32 | fp16 | int8

    def to_props(self) -> dict[str, object]:
        return {"graph": self.role, "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs], "graphs": dict(self.graphs),
                "precision": self.precision}

    @classmethod
    def from_props(cls, d: dict) -> "GraphInfo":
        return cls(role=d["graph"], inputs=tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
                   outputs=tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
                   graphs=dict(d["graphs"]), precision=d.get("precision", "fp32"))


def encode_props(metadata: ArtifactMetadata, info: GraphInfo) -> dict[str, str]:
    """All mgr properties of one graph as ``{key: json}``."""
    props = {PREFIX + k: json.dumps(v) for k, v in metadata.to_dict().items()}
    props.update({PREFIX + k: json.dumps(v) for k, v in info.to_props().items()})
    return props


def set_metadata(model: onnx.ModelProto, metadata: ArtifactMetadata, info: GraphInfo) -> onnx.ModelProto:
    """Replace every mgr property of ``model`` (others are kept)."""
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in keep + sorted(encode_props(metadata, info).items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def decode_props(props: dict[str, str], source: str | os.PathLike) -> tuple[ArtifactMetadata, GraphInfo]:
    """``{key: json}`` (from onnx or onnxruntime) -> (checked checkpoint metadata, GraphInfo)."""
    ours = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
    if not ours:
        raise ArtifactError(f"{source}: ONNX file without mgr metadata (no 'mgr.*' metadata_props); "
                            f"export it with `mgr export-onnx CHECKPOINT`")
    try:
        decoded = {k: json.loads(v) for k, v in ours.items()}
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{source}: mgr metadata is not valid JSON: {e}") from e
    graph = {k: decoded.pop(k) for k in GRAPH_KEYS if k in decoded}
    meta = check_metadata(decoded, source)
    try:
        info = GraphInfo.from_props(graph)
    except (KeyError, TypeError) as e:
        raise ArtifactError(f"{source}: mgr graph description incomplete ({e}); re-export it") from e
    return meta, info


def read_metadata(path: str | os.PathLike) -> tuple[ArtifactMetadata, GraphInfo]:
    """Metadata of an ONNX file on disk (weights are not loaded)."""
    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except (OSError, DecodeError) as e:
        raise ArtifactError(f"{path}: not a readable ONNX file: {e}") from e
    return decode_props({p.key: p.value for p in model.metadata_props}, path)
