"""The overlay: top-5 with probability bars, the Body_25 skeleton, FPS and per-stage timings.

OpenCV drawing only. Sizes scale with the frame height (1.0 at 480 rows), so the text is
as readable at 1920x1080 as at 640x480. The skeleton's edges come from the layout contract.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from mgr.train.layout import EDGES, JOINT_NAMES

from .body25 import FramingBox
from .pipeline import STAGES, Prediction

FONT = cv2.FONT_HERSHEY_SIMPLEX
# BGR colours
WHITE, GREY, BLACK = (255, 255, 255), (170, 170, 170), (0, 0, 0)
STATUS_COLOURS = {"ok": (90, 220, 90), "uncertain": (0, 200, 255), "warming up": (255, 200, 0),
                  "no person": (80, 80, 255)}
RIGHT_SIDE, LEFT_SIDE, CENTRE = (0, 140, 255), (255, 170, 0), (200, 200, 200)


@dataclass(frozen=True)
class OverlayInfo:
    display_fps: float = 0.0                         # frames drawn per second
    inference_fps: float = 0.0                       # inference steps per second
    dropped: int = 0                                 # frames the source dropped
    ms: dict = field(default_factory=dict)           # stage -> milliseconds (STAGES)


def _scale(image: np.ndarray) -> float:
    return max(image.shape[0] / 480.0, 0.6)


def _joint_colour(j: int) -> tuple[int, int, int]:
    name = JOINT_NAMES[j]
    return RIGHT_SIDE if name.startswith("R") else LEFT_SIDE if name.startswith("L") else CENTRE


def draw_skeleton(image: np.ndarray, kp: np.ndarray, s: float) -> None:
    """Body_25 (25, 3) in image pixels; joints with confidence 0 are skipped."""
    pts = [(int(round(x)), int(round(y))) if c > 0 else None for x, y, c in kp]
    thick = max(1, round(3 * s))
    for a, b in EDGES:
        if pts[a] is not None and pts[b] is not None:
            cv2.line(image, pts[a], pts[b], _joint_colour(b), thick, cv2.LINE_AA)
    for j, p in enumerate(pts):
        if p is not None:
            cv2.circle(image, p, thick + 2, _joint_colour(j), -1, cv2.LINE_AA)


def _darken(roi: np.ndarray, factor: float) -> None:
    roi[:] = cv2.convertScaleAbs(roi, alpha=factor)


def draw_framing(image: np.ndarray, box: FramingBox) -> None:
    """Darken what the model does not see (outside the framing crop)."""
    h, w = image.shape[:2]
    x1, y1 = box.x0 + box.width, box.y0 + box.height
    for roi in (image[:box.y0], image[y1:], image[box.y0:y1, :box.x0], image[box.y0:y1, x1:]):
        if roi.size:
            _darken(roi, 0.45)


def _panel(image: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 > x0 and y1 > y0:
        _darken(image[y0:y1, x0:x1], 0.35)


def _text(image, text, org, s, colour=WHITE, size=0.6, bold=1) -> None:
    cv2.putText(image, text, org, FONT, size * s, colour, max(1, round(bold * s)), cv2.LINE_AA)


def fit_text(text: str, max_width: int, size: float, thickness: int) -> str:
    """``text`` shortened with "..." so it fits ``max_width`` pixels (long class names)."""
    if cv2.getTextSize(text, FONT, size, thickness)[0][0] <= max_width:
        return text
    while len(text) > 1 and cv2.getTextSize(text + "...", FONT, size, thickness)[0][0] > max_width:
        text = text[:-1]
    return text.rstrip() + "..."


def draw_predictions(image: np.ndarray, pred: Prediction | None, s: float) -> None:
    """Status line and top-k names with probability bars, top-left."""
    status = pred.status if pred is not None else "warming up"
    line, pad, bar_w = int(30 * s), int(10 * s), int(150 * s)
    rows = len(pred.top) if pred is not None and status in ("ok", "uncertain") else 0
    width = min(image.shape[1], int(620 * s))
    _panel(image, 0, 0, width, pad * 2 + line * (rows + 1))
    y = pad + int(22 * s)
    _text(image, status.upper() if status != "ok" else "TOP 5", (pad, y), s,
          STATUS_COLOURS.get(status, WHITE), 0.75, 2)
    for name, p in (pred.top if rows else ()):
        y += line
        cv2.rectangle(image, (pad, y - int(17 * s)), (pad + bar_w, y + int(3 * s)), GREY, 1)
        cv2.rectangle(image, (pad, y - int(17 * s)), (pad + int(bar_w * p), y + int(3 * s)),
                      STATUS_COLOURS[status], -1)
        label = fit_text(f"{p * 100:4.1f}%  {name}", width - pad * 3 - bar_w, 0.55 * s, max(1, round(s)))
        _text(image, label, (pad * 2 + bar_w, y), s, WHITE, 0.55)


def draw_stats(image: np.ndarray, info: OverlayInfo, s: float) -> None:
    """FPS, dropped frames and per-stage milliseconds, bottom-left."""
    h = image.shape[0]
    line, pad = int(24 * s), int(10 * s)
    lines = [f"display {info.display_fps:4.1f} fps   inference {info.inference_fps:4.1f} fps   "
             f"dropped {info.dropped}",
             "  ".join(f"{k} {info.ms.get(k, 0.0):.1f}" for k in STAGES) + "  ms"]
    _panel(image, 0, h - pad * 2 - line * len(lines), int(620 * s), h)
    for i, text in enumerate(lines):
        _text(image, text, (pad, h - pad - line * (len(lines) - 1 - i) - int(4 * s)), s, WHITE, 0.5)


def render(image_bgr: np.ndarray, pred: Prediction | None, info: OverlayInfo, mirror: bool = False) -> np.ndarray:
    """The annotated copy of a frame. Mirroring flips the picture and skeleton, never the text."""
    out = image_bgr.copy()
    s = _scale(out)
    if pred is not None:
        draw_framing(out, pred.box)
        if pred.keypoints is not None:
            draw_skeleton(out, pred.keypoints, s)
    if mirror:
        out = np.ascontiguousarray(out[:, ::-1])
    draw_predictions(out, pred, s)
    draw_stats(out, info, s)
    return out
