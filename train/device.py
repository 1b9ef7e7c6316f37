"""The one device check: which names are valid (torch-free) and what torch device they mean.

    check_device("cuda:1")                      # -> "cuda:1"; ValueError naming the choices otherwise
    torch_device("auto")                        # -> torch.device("cuda") when CUDA is visible, else cpu

Every command and backend goes through these, so a bad ``--device`` reads the same everywhere:
``unknown device 'tpu'; choose auto, cpu or cuda[:N]`` (less where a caller takes less: the
runtimes' backends take no ``auto``, training takes no index: LOCAL_RANK picks it).
torch is imported inside ``torch_device`` only: the ONNX/TensorRT runtime path stays torch-free.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_CUDA = re.compile(r"cuda(?::(\d+))?")


def device_choices(auto: bool = True, indexed: bool = True) -> str:
    """The valid names, as the error message lists them: "auto, cpu or cuda[:N]"."""
    names = (["auto"] if auto else []) + ["cpu", "cuda[:N]" if indexed else "cuda"]
    return ", ".join(names[:-1]) + " or " + names[-1]


def check_device(device: str, *, auto: bool = True, indexed: bool = True) -> str:
    """``device`` when it is a valid name (auto, cpu, cuda, cuda:N); else a ValueError naming the choices.

    ``auto=False``: "auto" is not accepted; ``indexed=False``: "cuda:N" is not accepted.
    Checks the name only (no torch, no GPU query).
    """
    m = _CUDA.fullmatch(device) if isinstance(device, str) else None
    ok = device == "cpu" or (device == "auto" and auto) or (m is not None and (indexed or m.group(1) is None))
    if not ok:
        raise ValueError(f"unknown device {device!r}; choose {device_choices(auto, indexed)}")
    return device


def torch_device(device: str, *, auto: bool = True, indexed: bool = True,
                 rank: int | None = None) -> "torch.device":
    """The torch device ``device`` names, checked against what this machine has.

    ``auto``: CUDA when torch sees it, else cpu. ``rank`` (a process's LOCAL_RANK) picks the
    CUDA index of "cuda"/"auto" and must be below the visible device count. A CUDA device
    asked for on a machine without one is a ValueError saying to use cpu.
    """
    import torch  # lazily: the check above is torch-free

    check_device(device, auto=auto, indexed=indexed)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device; use device 'cpu'")
    if rank is not None:
        if rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {rank} but only {torch.cuda.device_count()} CUDA devices are visible; "
                             "start at most that many processes per node")
        return torch.device("cuda", rank)
    return torch.device(device)
