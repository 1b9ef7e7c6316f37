"""OpenPose Body_25 JSON: read (pick the most confident person) and write (same format).

One file per frame, ``<image stem>_keypoints.json`` with ``people[i].pose_keypoints_2d``:
75 floats (x, y, c) in pixels of the image the pose ran on (README "Data layouts").
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_write_json
from .layout import NUM_JOINTS

KEYPOINTS_SUFFIX = "_keypoints.json"


class KeypointFileError(ValueError):
    """A keypoint JSON that exists but cannot be used (truncated, not JSON, wrong shape)."""


def missing_skeleton() -> np.ndarray:
    return np.zeros((NUM_JOINTS, 3), dtype=np.float32)


def keypoints_path_for(image_stem: str, directory: Path) -> Path:
    return Path(directory) / f"{image_stem}{KEYPOINTS_SUFFIX}"


def _pose_values(flat, source: str, i: int) -> list:
    """``pose_keypoints_2d`` checked to be a list of 0 or 75 numbers (null allowed: a missing value)."""
    if not isinstance(flat, list):
        raise KeypointFileError(f"{source}: person {i} pose_keypoints_2d is a {type(flat).__name__}, "
                                "expected a list of numbers")
    bad = next((v for v in flat if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))), None)
    if bad is not None:
        raise KeypointFileError(f"{source}: person {i} pose_keypoints_2d holds a non-number ({bad!r})")
    if len(flat) not in (0, NUM_JOINTS * 3):
        raise KeypointFileError(f"{source}: person {i} has {len(flat)} pose values, "
                                f"expected {NUM_JOINTS * 3} (Body_25 x, y, c)")
    return flat


def parse_openpose(data: dict, source: str = "<json>") -> tuple[np.ndarray, int]:
    """OpenPose JSON dict -> ((25, 3) of the most confident person, number of people).

    The most confident person has the largest summed confidence over finite joints.
    No people gives an all-missing skeleton (zeros), which is not an error.
    """
    if not isinstance(data, dict) or not isinstance(data.get("people", None), list):
        raise KeypointFileError(f"{source}: not OpenPose output (no 'people' list)")
    best, best_score = missing_skeleton(), -1.0
    for i, person in enumerate(data["people"]):
        flat = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        if flat is None:
            raise KeypointFileError(f"{source}: person {i} has no pose_keypoints_2d")
        if len(_pose_values(flat, source, i)) == 0:
            continue
        try:
            kp = np.asarray([np.nan if v is None else v for v in flat], dtype=np.float64)
        except OverflowError as e:                  # an integer too large for a float
            raise KeypointFileError(f"{source}: person {i} pose_keypoints_2d holds a value out of range") from e
        with np.errstate(over="ignore"):            # beyond float32: inf, i.e. a missing joint
            kp = kp.astype(np.float32).reshape(NUM_JOINTS, 3)  # (25, 3)
        finite = np.isfinite(kp).all(axis=1)
        score = float(np.where(finite, kp[:, 2], 0.0).sum())
        if score > best_score:
            best, best_score = kp, score
    return best, len(data["people"])


def read_openpose_json(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read one keypoint file. A missing file is an all-missing skeleton with 0 people."""
    path = Path(path)
    if not path.exists():
        return missing_skeleton(), 0
    try:
        text = path.read_text()
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        reason = "empty file" if path.stat().st_size == 0 else f"invalid JSON ({e})"
        raise KeypointFileError(f"{path}: {reason}") from e
    return parse_openpose(data, str(path))


def to_openpose_dict(people: list[np.ndarray]) -> dict:
    """(25, 3) arrays -> OpenPose JSON dict (version 1.3 layout, body only)."""
    out = []
    for i, kp in enumerate(people):
        kp = np.asarray(kp, dtype=np.float64).reshape(NUM_JOINTS, 3)
        kp = np.where(np.isfinite(kp), kp, 0.0)
        out.append({"person_id": [-1], "pose_keypoints_2d": [round(float(v), 3) for v in kp.ravel()],
                    "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
                    "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
                    "hand_right_keypoints_3d": []})
    return {"version": 1.3, "people": out}


def write_openpose_json(path: str | os.PathLike, people: list[np.ndarray]) -> Path:
    """Write OpenPose-format JSON atomically (temp file + rename)."""
    return atomic_write_json(path, to_openpose_dict(people))
