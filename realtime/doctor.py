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
    import torch
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
    return Check("tensorrt", True, _version("tensorrt") or "installed")


def check_pose(pose_model: str | None) -> list[Check]:
    from .posemodel import PoseModelError, resolve_pose_model
    mp = _version("mediapipe")
    out = [Check("mediapipe", mp is not None, mp or "not installed", "" if mp else "pip install mediapipe")]
    try:
        path = resolve_pose_model(pose_model, allow_download=False)
        out.append(Check("pose model", True, str(path)))
    except PoseModelError as e:
        out.append(Check("pose model", False, "not found", str(e)))
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
    for i in range(camera_indices):
        cap = cv2.VideoCapture(i)
        if cap.isOpened():
            opened.append(str(i))
        cap.release()
    out.append(Check("cameras", bool(opened) or None,
                     f"indices that open: {', '.join(opened)}" if opened else f"none of 0..{camera_indices - 1} opens",
                     "" if opened else "no camera: use mgr replay VIDEO or mgr live --video PATH"))
    return out


def check_cache() -> Check:
    from mgr.train.registry import latest_model, mgr_home
    home = mgr_home()
    newest = latest_model()
    writable = os.access(home if home.exists() else home.parent, os.W_OK)
    return Check("cache", writable, f"{home} (MGR_HOME); newest model: {newest or 'none yet'}",
                 "" if writable else f"make {home} writable or set MGR_HOME")


def run_checks(pose_model: str | None = None, camera_indices: int = 4) -> list[Check]:
    return [check_python(), *check_torch(), check_onnxruntime(), check_tensorrt(),
            *check_pose(pose_model), *check_opencv(camera_indices), check_cache()]
