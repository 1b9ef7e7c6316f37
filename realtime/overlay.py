"""The overlay: top-5 with probability bars, the Body_25 skeleton, FPS and per-stage timings,
and, given the event decoder's view, the current event and a strip of the recent ones.

OpenCV drawing only. Sizes scale with the frame height (1.0 at 480 rows), so the text is
as readable at 1920x1080 as at 640x480. The skeleton's edges come from the layout contract.
The event strip runs along the bottom edge, oldest left, "now" at the right edge, with a tick
every 5 s; each class keeps one colour (``class_colour``) in the strip and the event panel.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from mgr.train.layout import EDGES, JOINT_NAMES

from .body25 import FramingBox
from .events import NO_GESTURE, EventView
from .pipeline import STAGES, Prediction

FONT = cv2.FONT_HERSHEY_SIMPLEX
# BGR colours
WHITE, GREY, BLACK = (255, 255, 255), (170, 170, 170), (0, 0, 0)
STATUS_COLOURS = {"ok": (90, 220, 90), "uncertain": (0, 200, 255), "warming up": (255, 200, 0),
                  "no person": (80, 80, 255)}
RIGHT_SIDE, LEFT_SIDE, CENTRE = (0, 140, 255), (255, 170, 0), (200, 200, 200)
STRIP_TICK_S = 5.0      # seconds between the strip's ticks


@dataclass(frozen=True)
class OverlayInfo:
    display_fps: float = 0.0                         # frames drawn per second
    inference_fps: float = 0.0                       # inference steps per second
    dropped: int = 0                                 # frames the source dropped
    ms: dict = field(default_factory=dict)           # stage -> milliseconds (STAGES)
    events: EventView | None = None                  # the event decoder's view; None: no event panel/strip


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


@lru_cache(maxsize=None)
def class_colour(index: int) -> tuple[int, int, int]:
    """A stable BGR colour per class index: hues a golden-ratio step apart, so neighbours differ."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.75, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_event_panel(image: np.ndarray, view: EventView, s: float) -> int:
    """The current event (name and seconds since it began) or "no gesture", top-left; its height."""
    line, pad = int(30 * s), int(10 * s)
    width, height = min(image.shape[1], int(620 * s)), pad * 2 + line
    _panel(image, 0, 0, width, height)
    y, box = pad + int(22 * s), int(18 * s)
    if view.current is None:
        _text(image, NO_GESTURE, (pad, y), s, GREY, 0.65, 2)
        return height
    name, index, start = view.current
    cv2.rectangle(image, (pad, y - box), (pad + box, y), class_colour(index), -1)
    since = f"{max(0.0, view.now - start):.1f} s"
    thick = max(1, round(2 * s))
    since_w = cv2.getTextSize(since, FONT, 0.65 * s, thick)[0][0]
    x = pad * 2 + box
    _text(image, fit_text(name, max(1, width - x - since_w - pad * 3), 0.65 * s, thick), (x, y), s, WHITE, 0.65, 2)
    _text(image, since, (width - pad - since_w, y), s, WHITE, 0.65, 2)
    return height


def _strip_x(t: float, view: EventView, width: int) -> int:
    return int(round(np.clip((t - view.now + view.horizon_s) / view.horizon_s, 0.0, 1.0) * width))


def draw_event_strip(image: np.ndarray, view: EventView, s: float) -> int:
    """The last ``view.horizon_s`` seconds as coloured segments along the bottom edge; its height."""
    h, w = image.shape[:2]
    height, margin = int(20 * s), max(1, int(3 * s))
    top = h - height
    _panel(image, 0, top, w, h)
    if view.horizon_s <= 0:
        return height
    first_tick = max(0.0, np.ceil((view.now - view.horizon_s) / STRIP_TICK_S) * STRIP_TICK_S)
    for t in np.arange(first_tick, view.now + 1e-9, STRIP_TICK_S):
        x = _strip_x(t, view, w)
        cv2.line(image, (x, top), (x, h - 1), GREY, 1)
    for start, end, index, _name in view.recent:
        if end < view.now - view.horizon_s:
            continue
        x0, x1 = _strip_x(start, view, w), _strip_x(end, view, w)
        x1 = max(x1, x0 + max(2, int(2 * s)))        # a short event stays visible
        cv2.rectangle(image, (x0, top + margin), (min(x1, w) - 1, h - 1 - margin), class_colour(index), -1)
    return height


def draw_predictions(image: np.ndarray, pred: Prediction | None, s: float, y0: int = 0) -> None:
    """Status line and top-k names with probability bars, top-left (from row ``y0`` down)."""
    status = pred.status if pred is not None else "warming up"
    line, pad, bar_w = int(30 * s), int(10 * s), int(150 * s)
    rows = len(pred.top) if pred is not None and status in ("ok", "uncertain") else 0
    width = min(image.shape[1], int(620 * s))
    _panel(image, 0, y0, width, y0 + pad * 2 + line * (rows + 1))
    y = y0 + pad + int(22 * s)
    _text(image, status.upper() if status != "ok" else "TOP 5", (pad, y), s,
          STATUS_COLOURS.get(status, WHITE), 0.75, 2)
    for name, p in (pred.top if rows else ()):
        y += line
        cv2.rectangle(image, (pad, y - int(17 * s)), (pad + bar_w, y + int(3 * s)), GREY, 1)
        cv2.rectangle(image, (pad, y - int(17 * s)), (pad + int(bar_w * p), y + int(3 * s)),
                      STATUS_COLOURS[status], -1)
        label = fit_text(f"{p * 100:4.1f}%  {name}", width - pad * 3 - bar_w, 0.55 * s, max(1, round(s)))
        _text(image, label, (pad * 2 + bar_w, y), s, WHITE, 0.55)


def draw_stats(image: np.ndarray, info: OverlayInfo, s: float, bottom: int | None = None) -> None:
    """FPS, dropped frames and per-stage milliseconds, bottom-left (ending at row ``bottom``)."""
    h = image.shape[0] if bottom is None else bottom
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
    view = info.events
    top = draw_event_panel(out, view, s) if view is not None else 0
    draw_predictions(out, pred, s, top)
    bottom = out.shape[0] - (draw_event_strip(out, view, s) if view is not None else 0)
    draw_stats(out, info, s, bottom)
    return out
