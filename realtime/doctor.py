"""`mgr doctor`: what users ask about first, each line OK or what to do."""
from __future__ import annotations

import importlib.util
import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None       # True OK, False needs action, None informational / optional
    detail: str           # what was found
    action: str = ""      # what to do when not OK


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def check_python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", ok, f"{platform.python_version()} ({sys.executable})", "" if ok else "use Python 3.10 or newer")


def check_torch() -> list[Check]:
    try:
        import torch
    except ModuleNotFoundError:
        return [Check("torch", None, "not installed: a runtime-only install (live, replay, ONNX models)",
                      "to train, evaluate or export: pip install 'mgr[train]'")]
    out = [Check("torch", True, f"{torch.__version__}, {torch.get_num_threads()} threads")]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        out.append(Check("CUDA", True, f"{torch.version.cuda}: {names}"))
    else:
        built = torch.version.cuda or "CPU-only build"
        out.append(Check("CUDA", None, f"no CUDA device visible (torch built with {built})",
                         "fine on a laptop; for training on a GPU install a CUDA build of torch"))
    return out


def check_onnxruntime() -> Check:
    try:
        import onnxruntime as ort
    except ImportError:
        return Check("onnxruntime", False, "not installed", "pip install onnxruntime")
    return Check("onnxruntime", True, f"{ort.__version__}, providers: {', '.join(ort.get_available_providers())}")


def check_tensorrt() -> Check:
    if importlib.util.find_spec("tensorrt") is None:
        return Check("tensorrt", None, "not installed", "on a machine with an NVIDIA GPU: pip install 'mgr[trt]'")
    try:
        import tensorrt
    except Exception as e:  # noqa: BLE001 - a broken install (missing libnvinfer, CUDA mismatch) is the finding
        return Check("tensorrt", False, f"installed but does not import: {type(e).__name__}: {e}",
                     "reinstall: pip install --force-reinstall 'mgr[trt]' (TensorRT needs an NVIDIA driver)")
    return Check("tensorrt", True, getattr(tensorrt, "__version__", None) or _version("tensorrt") or "installed")


def check_pose(pose_model: str | None) -> list[Check]:
    from .posemodel import PoseModelError, resolve_pose_model
    mp = _version("mediapipe")
    out = [Check("mediapipe", mp is not None, mp or "not installed", "" if mp else "pip install mediapipe")]
    try:
        path = resolve_pose_model(pose_model, allow_download=False)   # doctor looks; it never downloads
        out.append(Check("pose model", True, str(path)))
    except PoseModelError as e:
        from .posemodel import ENV_VAR, MODEL_URL, cached_model_path
        if pose_model or os.environ.get(ENV_VAR):         # a path was given and is wrong: say which
            out.append(Check("pose model", False, "the given path does not work", str(e)))
        else:
            out.append(Check("pose model", False, "none given and none cached",
                             f"online, the first mgr live/replay downloads it to {cached_model_path()} "
                             f"(from {MODEL_URL}); offline, give --pose-model PATH or {ENV_VAR}=PATH"))
    return out


def check_opencv(camera_indices: int) -> list[Check]:
    import cv2
    dists = [d for d in ("opencv-contrib-python", "opencv-python", "opencv-python-headless",
                         "opencv-contrib-python-headless") if _version(d)]
    clash = len(dists) > 1
    names = [cv2.videoio_registry.getBackendName(b) for b in cv2.videoio_registry.getBackends()]
    backends = ", ".join(dict.fromkeys(names))
    out = [Check("opencv", not clash, f"{cv2.__version__} from {', '.join(dists) or '?'}; video backends: {backends}",
                 "uninstall all but opencv-contrib-python (two distributions share one cv2 folder)" if clash else "")]
    opened = []
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)   # a missing index is a finding, not noise
    try:
        for i in range(camera_indices):
            cap = cv2.VideoCapture(i)
            if cap.isOpened():
                opened.append(str(i))
            cap.release()
    finally:
        cv2.utils.logging.setLogLevel(level)
    out.append(Check("cameras", bool(opened) or None,
                     f"indices that open: {', '.join(opened)}" if opened else f"none of 0..{camera_indices - 1} opens",
                     "" if opened else "no camera: use mgr replay VIDEO or mgr live --video PATH"))
    return out


def check_cache() -> list[Check]:
    from mgr.train.registry import latest_model, mgr_home
    home = mgr_home()
    newest = latest_model()
    writable = os.access(home if home.exists() else home.parent, os.W_OK)
    try:
        import torch
        hub = torch.hub.get_dir()
    except ModuleNotFoundError:
        hub = "(torch not installed)"
    return [Check("cache", writable, f"{home} (MGR_HOME: pose model, newest model record); newest model: "
                                     f"{newest or 'none yet'}",
                  "" if writable else f"make {home} writable or set MGR_HOME"),
            Check("ImageNet weights", None, f"torch hub cache {hub} (TORCH_HOME)",
                  "offline: mgr train --pretrained resnet18.pth (a torchvision state_dict)")]


def run_checks(pose_model: str | None = None, camera_indices: int = 4) -> list[Check]:
    return [check_python(), *check_torch(), check_onnxruntime(), check_tensorrt(),
            *check_pose(pose_model), *check_opencv(camera_indices), *check_cache()]
