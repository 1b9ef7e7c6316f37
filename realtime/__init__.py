"""mgr.realtime: camera/video sources, pose, the Body_25 adapter, the live loop and overlay.

The Python API is ``from mgr.realtime import Recognizer`` (README "Python API").
"""
from __future__ import annotations

__all__ = ["Recognizer", "LiveConfig", "EventConfig", "Prediction", "GestureEvent"]


def __getattr__(name: str):
    # loaded on first use, so `import mgr.realtime` stays cheap for the CLI
    if name in ("Recognizer", "LiveConfig", "Prediction"):
        from . import pipeline
        return getattr(pipeline, name)
    if name in ("EventConfig", "GestureEvent"):
        from . import events
        return getattr(events, name)
    raise AttributeError(f"module 'mgr.realtime' has no attribute {name!r}")
