"""Splits: the report's seeded 60/20/20 clip-level split, and iMiGUE's cross-subject protocol.

A split is a JSON file of clip ids, saved in the run folder and reused by train,
evaluate and export.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from importlib import resources
from pathlib import Path

import numpy as np

from typing import TYPE_CHECKING, Iterable, Optional

from .atomic import atomic_write_json

if TYPE_CHECKING:   # train.data imports torch; the split policy must not
    from .data import ClipRecord

SPLITS = ("random", "cross-subject")
PARTS = ("train", "val", "test")
CROSS_SUBJECT_VAL_FRACTION = 0.1   # default share of train subjects' clips held out for model selection


def packaged_protocol() -> Path:
    """The official iMiGUE cross-subject protocol shipped with the package (37 train / 35 test subjects)."""
    return Path(str(resources.files("mgr.train").joinpath("data/imigue_cross_subject.json")))


def random_split(clips: list[ClipRecord], seed: int = 0, ratios=(0.6, 0.2, 0.2)) -> dict[str, list[str]]:
    """Stratified per class. Classes with 1 clip go to train; with 2, to train and test (if the test
    ratio is not 0). Every clip lands in exactly one part."""
    by_class: dict[int, list[str]] = defaultdict(list)
    for c in clips:
        by_class[c.label].append(c.clip_id)
    rng = np.random.default_rng(seed)
    out = {p: [] for p in PARTS}
    for label in sorted(by_class):
        ids = sorted(by_class[label])
        rng.shuffle(ids)
        n = len(ids)
        keep_test = 1 if n >= 2 and ratios[2] > 0 else 0      # a test clip for every class with 2+ clips
        n_train = min(max(1, int(round(ratios[0] * n))), n - keep_test)
        n_val = int(round(ratios[1] * n)) if n >= 3 else 0
        n_val = max(0, min(n_val, n - n_train - keep_test))  # never negative: a clip in two parts
        if ratios[2] == 0:
            n_val = n - n_train                                # no test part: the rest validates
        out["train"] += ids[:n_train]
        out["val"] += ids[n_train:n_train + n_val]
        out["test"] += ids[n_train + n_val:]
    return {"kind": "random", "seed": seed, **{p: sorted(v) for p, v in out.items()}}


def load_protocol(path: str | os.PathLike) -> tuple[set[int], set[int]]:
    try:
        d = json.loads(Path(path).read_text())
        return set(map(int, d["train_subjects"])), set(map(int, d["test_subjects"]))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a cross-subject protocol file (train_subjects, test_subjects): {e}") from e


def cross_subject_split(clips: list[ClipRecord], protocol: str | os.PathLike | None = None, seed: int = 0,
                        val_fraction: float = CROSS_SUBJECT_VAL_FRACTION) -> dict:
    """The official protocol: train/test by subject (``protocol`` None: the packaged one).

    Validation is carved from train subjects' clips (stratified, seeded), so model selection
    never looks at the test subjects. ``val_fraction`` 0 keeps all train subjects' clips for
    training (13,935 in iMiGUE's label file, as published results use) and no validation.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    protocol = protocol or packaged_protocol()
    train_s, test_s = load_protocol(protocol)
    missing = [c.clip_id for c in clips if c.subject is None]
    if missing:
        raise ValueError(f"{len(missing)} clips have no subject id (e.g. {missing[0]}): the cross-subject split "
                         "needs the official layout (label CSV with subject_id); use --split random")
    train = [c for c in clips if c.subject in train_s]
    test = sorted(c.clip_id for c in clips if c.subject in test_s)
    train_all = sorted(c.clip_id for c in train)
    if val_fraction == 0.0:
        fit_ids, val = train_all, []
    else:
        inner = random_split(train, seed, (1 - val_fraction, val_fraction, 0.0))
        fit_ids, val = inner["train"], sorted(inner["val"] + inner["test"])
    return {"kind": "cross-subject", "seed": seed, "protocol": str(protocol), "val_fraction": val_fraction,
            "train": fit_ids, "val": val, "test": test, "train_all": train_all}


def save_split(split: dict, path: str | os.PathLike) -> Path:
    return atomic_write_json(path, split)


def load_split(path: str | os.PathLike) -> dict:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read split file: {e}") from e
    if not all(p in d for p in PARTS):
        raise ValueError(f"{path}: split file lacks one of {PARTS}")
    return d


def select(clips: list[ClipRecord], split: dict, part: str) -> list[ClipRecord]:
    if part not in PARTS:
        raise ValueError(f"unknown split part {part!r}; choose one of {', '.join(PARTS)}")
    by_id = {c.clip_id: c for c in clips}
    missing = [i for i in split[part] if i not in by_id]
    if missing:
        raise ValueError(f"split names {len(missing)} clips not in this dataset (e.g. {missing[0]}): "
                         "was it made for another data folder?")
    return [by_id[i] for i in split[part]]


SPLIT_FALLBACKS = ("error", "random")
RANDOM_SPLIT_SOURCE = "new random split (seeded 60/20/20)"


def missing_split_message(candidates: Iterable[str | os.PathLike] = ()) -> str:
    """The one wording of "no split file": which file was looked for, and what that means."""
    where = ", ".join(str(c) for c in candidates) or "RUN/split.json"
    return (f"split file {where} is missing (no --split-file given), so the clips of the run's "
            "train/val/test parts are unknown")


def resolve_split(split_file: Optional[str | os.PathLike], beside: Iterable[str | os.PathLike] = (), *,
                  fallback: str = "error", clips: Optional[list[ClipRecord]] = None, seed: int = 0,
                  new_split_flag: str = "--new-split") -> tuple[Optional[dict], str]:
    """A run's split and where it came from: ``(split or None, source description)``.

    1. ``split_file`` (--split-file): loaded (a ValueError if unreadable); source: its path.
    2. else the first of ``beside`` (the split.json files beside the run's checkpoints) that is a
       file; source: its path.
    3. else ``fallback``: "error" raises a ValueError saying how to pass the split (or to ask
       for a new one with ``new_split_flag``); "random" gives the seeded 60/20/20
       ``random_split(clips, seed)``, or None when ``clips`` is None (the caller makes it later),
       with a source that starts "new random split" and says why it may not be the run's own.
    """
    if fallback not in SPLIT_FALLBACKS:
        raise ValueError(f"unknown split fallback {fallback!r}; choose one of {', '.join(SPLIT_FALLBACKS)}")
    if split_file is not None and str(split_file) != "":
        return load_split(split_file), str(split_file)
    candidates = [Path(c) for c in beside]
    for c in candidates:
        if c.is_file():
            return load_split(c), str(c)
    missing = missing_split_message(candidates)
    if fallback == "error":
        raise ValueError(f"{missing}. Pass the run's split with --split-file RUN/split.json, or {new_split_flag} "
                         "to make a new seeded random split (its test part may hold clips the model was trained on)")
    split = random_split(clips, seed) if clips is not None else None
    return split, (f"{RANDOM_SPLIT_SOURCE}: {missing}; it is the run's own only for a --split random run "
                   "on this same data")
