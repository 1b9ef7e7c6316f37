"""DESIGN.md section 1: realtime -> engines -> train, and the live loop never imports the training loop."""
import subprocess
import sys

LIVE_MODULES = ["mgr.realtime.pipeline", "mgr.realtime.runner", "mgr.realtime.sources", "mgr.realtime.pose",
                "mgr.realtime.body25", "mgr.realtime.overlay", "mgr.realtime.outputs", "mgr.engines.backends"]


def _loaded_after_import(modules):
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules) +
            "print(' '.join(sorted(k for k in sys.modules if k.startswith('mgr.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_live_loop_does_not_import_the_training_loop():
    loaded = _loaded_after_import(LIVE_MODULES)
    assert "mgr.train.fit" not in loaded and "mgr.train.synth" not in loaded, loaded


def test_train_and_engines_never_import_upward():
    loaded = _loaded_after_import(["mgr.train.fit", "mgr.train.cli", "mgr.train.run_eval", "mgr.engines.cli",
                                   "mgr.engines.export", "mgr.engines.bench"])
    assert not [m for m in loaded if m.startswith("mgr.realtime")], loaded
    loaded = _loaded_after_import(["mgr.train.fit", "mgr.train.cli", "mgr.train.run_eval"])
    assert not [m for m in loaded if m.startswith("mgr.engines")], loaded
