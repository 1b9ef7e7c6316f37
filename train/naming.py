"""File naming shared by the dataset readers and the live image-folder source (torch-free)."""
from __future__ import annotations

import re
from pathlib import Path


def natural_key(path: str | Path) -> list:
    """Sort "frame_2.jpg" before "frame_10.jpg" (a text sort scrambles frame order)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", Path(path).name)]
