"""TensorRT path up to the library boundary: profiles, sidecar, compatibility, precision
preparation, parity arithmetic and the missing-library error. Tests that need TensorRT
itself (and a GPU) skip with the reason "tensorrt not installed"."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from conftest import random_clips
from mgr.engines import cli as engines_cli
from mgr.engines import trt_export
from mgr.engines.artifacts import ArtifactError, TensorSpec
from mgr.engines.backends import MissingRuntimeError
from mgr.engines.onnx_meta import GraphInfo, read_metadata
from mgr.engines.quantize import arrays_calibration
from mgr.engines.tensorrt_build import (BatchProfile, EngineMismatchError, TrtBuildConfig, check_compatible,
                                        engine_io, import_tensorrt, make_sidecar, profile_shapes, read_sidecar,
                                        sidecar_path, write_sidecar)
from mgr.engines.trt_export import agreement, fp32_onnx_set, prepare_onnx

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_trt = pytest.mark.skipif(not HAS_TRT, reason="tensorrt not installed")
no_trt = pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed: the missing-library path cannot run")
DEVICE = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0]}


def test_batch_profile_parsing_and_validation():
    assert BatchProfile.parse("1,8,32") == BatchProfile(1, 8, 32)
    for bad in ("8,1,32", "0,1,1", "1,2", "a,b,c"):
        with pytest.raises(ValueError, match="min|MIN"):
            BatchProfile.parse(bad)


def test_profile_shapes_scale_the_encoder_by_frames_and_keep_fixed_axes():
    enc = (TensorSpec("frames", ("batch", 3, 224, 224)),)
    assert profile_shapes("encoder", enc, BatchProfile(1, 2, 8), num_frames=4) == {
        "frames": ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))}
    head = (TensorSpec("features", ("batch", 4, 512)), TensorSpec("skeleton", (1, 3, 4, 25)))
    shapes = profile_shapes("head", head, BatchProfile(1, 1, 16), num_frames=4)
    assert shapes["features"] == ((1, 4, 512), (1, 4, 512), (16, 4, 512))
    assert shapes["skeleton"] == ((1, 3, 4, 25),) * 3


def test_build_config_validation():
    with pytest.raises(ValueError, match="fp32, fp16, int8"):
        TrtBuildConfig(precision="tf32")
    with pytest.raises(ValueError, match="workspace"):
        TrtBuildConfig(workspace_mib=1)


@pytest.fixture()
def sidecar_engine(tmp_path, onnx_sets):
    meta, info = read_metadata(onnx_sets["skeleton"].head)
    engine = tmp_path / "m.head.engine"
    engine.write_bytes(b"not really an engine")
    side = make_sidecar(meta, info, "10.13.0", DEVICE, BatchProfile(1, 1, 32), "m.head.onnx")
    write_sidecar(engine, side)
    return engine, meta, info


def test_sidecar_round_trip(sidecar_engine):
    engine, meta, info = sidecar_engine
    assert sidecar_path(engine).name == "m.head.engine.json"
    meta2, info2, side = read_sidecar(engine)
    assert meta2 == meta and info2 == info
    assert side["tensorrt_version"] == "10.13.0" and side["profile"] == {"min": 1, "opt": 1, "max": 32}
    assert [(r["io"], r["name"]) for r in engine_io(side)] == [("input", "skeleton"), ("output", "logits")]


@pytest.mark.parametrize("version, device, words", [
    ("11.0.0", DEVICE, "TensorRT 10.13.0, this machine has TensorRT 11.0.0"),
    ("10.13.0", {"name": "NVIDIA L4", "compute_capability": [8, 9]}, "this GPU is NVIDIA L4"),
])
def test_version_or_device_mismatch_says_rebuild(sidecar_engine, version, device, words):
    engine, *_ = sidecar_engine
    _, _, side = read_sidecar(engine)
    with pytest.raises(EngineMismatchError, match=words) as e:
        check_compatible(side, engine, version, device)
    assert "mgr export-trt" in str(e.value)
    check_compatible(side, engine, "10.13.0", DEVICE)   # the matching machine passes


def test_bad_sidecars(tmp_path, sidecar_engine):
    engine, *_ = sidecar_engine
    with pytest.raises(ArtifactError, match="no sidecar.*mgr export-trt"):
        read_sidecar(tmp_path / "other.engine")
    sidecar_path(engine).write_text('{"format": "something-else"}')
    with pytest.raises(ArtifactError, match="not an mgr TensorRT sidecar"):
        read_sidecar(engine)
    sidecar_path(engine).write_text('{"format": "mgr-tensorrt-sidecar", "sidecar_version": 7}')
    with pytest.raises(ArtifactError, match="newer"):
        read_sidecar(engine)


def test_agreement_arithmetic():
    ref = np.array([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]])
    test = ref.copy()
    test[1] = [0, 1, 2, 3, 5, 4.5]          # top-1 flips; top-5 sets still equal
    a = agreement(ref, test)
    assert a["top1_agreement"] == 0.5 and a["top5_overlap"] == 1.0 and a["max_abs_diff"] == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        agreement(ref, ref[:1])


def test_prepare_onnx_for_each_precision(tmp_path, onnx_sets, fp16_set):
    fp32 = onnx_sets["skeleton"]
    assert prepare_onnx(fp32, tmp_path, "fp32") == fp32
    half = prepare_onnx(fp32, tmp_path, "fp16")
    assert read_metadata(half.head)[1].precision == "fp16"
    _, skel = random_clips(4, rgb=False)
    q = prepare_onnx(fp32, tmp_path, "int8", arrays_calibration(None, skel))
    assert read_metadata(q.clip)[1].precision == "int8"
    with pytest.raises(ValueError, match="--calib"):
        prepare_onnx(fp32, tmp_path, "int8")
    # a reduced-precision ONNX is not re-converted
    with pytest.raises(ValueError, match="give the FP32 export"):
        fp32_onnx_set(fp16_set.clip, tmp_path, None)
    assert fp32_onnx_set(onnx_sets["rgb"].clip, tmp_path, None) == onnx_sets["rgb"]


@no_trt
def test_missing_tensorrt_fails_at_once_with_install_hint(tmp_path, checkpoints, monkeypatch):
    with pytest.raises(MissingRuntimeError, match=r"pip install 'mgr\[trt\]'"):
        import_tensorrt()
    monkeypatch.setattr(trt_export, "fp32_onnx_set", lambda *a, **k: pytest.fail("exported before the check"))
    with pytest.raises(MissingRuntimeError, match="NVIDIA GPU"):
        trt_export.export_trt(checkpoints["skeleton"], tmp_path / "m.engine", TrtBuildConfig())
    app, bench = typer.Typer(), typer.Typer()
    app.add_typer(bench, name="bench")
    engines_cli.register(app, bench)
    result = CliRunner().invoke(app, ["export-trt", checkpoints["skeleton"], "--out", str(tmp_path / "m.engine")])
    assert result.exit_code == 2 and "mgr[trt]" in result.stderr
    assert list(tmp_path.iterdir()) == []


@needs_trt
def test_build_run_and_parity_on_gpu(tmp_path, checkpoints):
    from mgr.engines.backends import load_backend
    result = trt_export.export_trt(checkpoints["fusion"], tmp_path / "m.engine",
                                   TrtBuildConfig(profile=BatchProfile(1, 1, 8), timing_cache=tmp_path / "t.cache"))
    assert result.parity["top1_agreement"] == 1.0 and result.parity["max_abs_diff"] < 1e-2
    assert (tmp_path / "t.cache").is_file() and sidecar_path(result.engines.clip).is_file()
    backend = load_backend(result.engines.clip, device="cuda")
    rgb, skel = random_clips(2)
    assert backend.predict(rgb, skel).shape == (2, 32)


@needs_trt
def test_engine_from_another_tensorrt_version_is_refused_before_deserialising(tmp_path, onnx_sets):
    from mgr.engines.backends import load_backend
    meta, info = read_metadata(onnx_sets["skeleton"].head)
    for role, name in (("clip", "m.engine"), ("head", "m.head.engine")):
        info = GraphInfo(role, info.inputs, info.outputs, {"clip": "m.engine", "encoder": None, "head": "m.head.engine"})
        (tmp_path / name).write_bytes(b"garbage that would crash a deserialiser")
        write_sidecar(tmp_path / name, make_sidecar(meta, info, "0.0.1", DEVICE, BatchProfile(), "x.onnx"))
    with pytest.raises(EngineMismatchError, match="rebuild"):
        load_backend(tmp_path / "m.engine", device="cuda")


class _StubTensorRT:
    """Stands in for the tensorrt module at the library boundary only: the backend's checks
    must refuse a foreign engine before any byte reaches the deserialiser."""

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    def __init__(self, version):
        self.__version__ = version
        self.deserialised = []
        stub = self

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data):
                stub.deserialised.append(bytes(data))
                return None          # what TensorRT returns for bytes it cannot read

        self.Runtime = Runtime


def _engine_set(tmp_path, onnx_sets, version, device, roles=(("clip", "m.engine"), ("head", "m.head.engine"))):
    meta, info = read_metadata(onnx_sets["skeleton"].head)
    for role, name in roles:
        graph = GraphInfo(role, info.inputs, info.outputs, {"clip": "m.engine", "encoder": None, "head": "m.head.engine"})
        (tmp_path / name).write_bytes(b"garbage that would crash a deserialiser")
        write_sidecar(tmp_path / name, make_sidecar(meta, graph, version, device, BatchProfile(), "x.onnx"))
    return tmp_path / "m.engine"


@pytest.mark.parametrize("version, device, words", [
    ("0.0.1", DEVICE, "built with TensorRT 0.0.1"),
    ("10.99.0", {"name": "NVIDIA GeForce RTX 4090", "compute_capability": [8, 9]}, "built for GPU NVIDIA GeForce"),
])
def test_backend_refuses_a_foreign_engine_before_deserialising(tmp_path, onnx_sets, monkeypatch, version, device, words):
    from mgr.engines import tensorrt_backend
    from mgr.engines.backends import load_backend
    stub = _StubTensorRT("10.99.0")
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", stub)
    monkeypatch.setattr(tensorrt_backend, "cuda_device", lambda index=0: DEVICE)
    engine = _engine_set(tmp_path, onnx_sets, version, device)
    with pytest.raises(EngineMismatchError, match="rebuild it with `mgr export-trt") as e:
        load_backend(engine, device="cuda")
    assert words in str(e.value) and stub.deserialised == []


def test_backend_turns_an_unreadable_engine_into_a_rebuild_error(tmp_path, onnx_sets, monkeypatch):
    from mgr.engines import tensorrt_backend
    from mgr.engines.backends import load_backend
    stub = _StubTensorRT("10.99.0")
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", stub)
    monkeypatch.setattr(tensorrt_backend, "cuda_device", lambda index=0: DEVICE)
    engine = _engine_set(tmp_path, onnx_sets, "10.99.0", DEVICE)
    with pytest.raises(EngineMismatchError, match="could not deserialise") as e:
        load_backend(engine, device="cuda")
    assert "m.head.engine" in str(e.value) and len(stub.deserialised) == 1


def test_backend_refuses_an_engine_holding_another_graph(tmp_path, onnx_sets, monkeypatch):
    from mgr.engines import tensorrt_backend
    from mgr.engines.backends import load_backend
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", _StubTensorRT("10.99.0"))
    monkeypatch.setattr(tensorrt_backend, "cuda_device", lambda index=0: DEVICE)
    engine = _engine_set(tmp_path, onnx_sets, "10.99.0", DEVICE, roles=(("clip", "m.engine"), ("clip", "m.head.engine")))
    with pytest.raises(ArtifactError, match="holds the clip graph, expected the head graph"):
        load_backend(engine, device="cuda")
