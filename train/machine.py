"""One machine-info record for every JSON that says where a figure or a run came from (torch-free).

Used by training (RUN/environment.json), `mgr bench train`, `mgr bench models`, `mgr bench live`
and the soak. torch is described only when the process already imported it: the runtime
install has no torch, and a benchmark must not pay for importing it.
"""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

LIBRARIES = ("mgr", "torch", "torchvision", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt",
             "nvidia-modelopt", "mediapipe", "opencv-contrib-python")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info(threads: int | None = None) -> dict:
    """CPU, cores, load, platform, library versions; torch threads and GPUs when torch is loaded."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "usable_cpus": usable, "threads": threads,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "platform": platform.platform(), "python": platform.python_version(),
            "libraries": library_versions(), "torch_threads": None, "gpus": None}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
            if torch.cuda.is_available() else []
    return info
