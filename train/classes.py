"""The 32 official iMiGUE classes (README "Data layouts"), read from packaged data."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

NUM_CLASSES = 32
# The official raw label file codes class 32 ("Illustrative body language") as 99.
RAW_LABEL_ALIASES = {99: 32}


@dataclass(frozen=True)
class GestureClass:
    id: int      # official 1-based class id
    index: int   # 0-based index the model uses
    name: str    # official name
    clips: int   # clip count in the official label file


@lru_cache(maxsize=1)
def imigue_classes() -> tuple[GestureClass, ...]:
    text = resources.files("mgr.train").joinpath("data/imigue_classes.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    classes = tuple(GestureClass(int(r["id"]), int(r["index"]), r["name"], int(r["clips"])) for r in rows)
    assert len(classes) == NUM_CLASSES and all(c.index == i for i, c in enumerate(classes))
    return classes


def class_names() -> list[str]:
    return [c.name for c in imigue_classes()]


def index_from_official_id(raw: int | str) -> int:
    """Official class id (1..32, or the raw label file's 99) to the 0-based model index."""
    try:
        cid = int(str(raw).strip())
    except ValueError as e:
        raise ValueError(f"class id {raw!r} is not an integer; valid ids are 1..32 (or 99 for 32)") from e
    cid = RAW_LABEL_ALIASES.get(cid, cid)
    if not 1 <= cid <= NUM_CLASSES:
        raise ValueError(f"class id {raw!r} is outside 1..32 (99 is accepted as 32)")
    return cid - 1
