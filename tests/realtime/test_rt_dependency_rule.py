"""The dependency rule (README "Architecture"): realtime -> engines -> train, the live loop never
imports the training loop, and the runtime path never imports torch."""
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


RUNTIME_MODULES = ["mgr.realtime", "mgr.realtime.cli", "mgr.realtime.commands", "mgr.realtime.runner",
                   "mgr.realtime.bench", "mgr.realtime.soak", "mgr.realtime.doctor", "mgr.engines.ort_backend",
                   "mgr.engines.tensorrt_backend", "mgr.engines.trt_export", "mgr.engines.quantize",
                   "mgr.engines.cli", "mgr.train.cli", "mgr.train.metadata", "mgr.train.preprocess"]
# a meta-path finder that makes the training extra look uninstalled, as in `pip install mgr`
BLOCK_TRAIN_EXTRA = (
    "import sys, importlib.abc\n"
    "class _NoTrainExtra(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'torchvision', 'onnxscript'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, _NoTrainExtra())\n")


def test_the_runtime_path_and_the_cli_import_no_torch():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in RUNTIME_MODULES) +
            "print(' '.join(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'torchvision'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [], f"torch imported by the runtime path: {out.stdout[:200]}"


def _mgr_without_torch(*args, env=None):
    code = BLOCK_TRAIN_EXTRA + "import sys\nfrom mgr.realtime.cli import main\nsys.argv = ['mgr', *sys.argv[1:]]\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


def test_help_works_and_training_commands_name_the_extra_in_a_runtime_only_install(tmp_path):
    r = _mgr_without_torch("--help")
    assert r.returncode == 0 and "replay" in r.stdout and "train" in r.stdout, r.stderr
    for args in (["train", str(tmp_path)], ["evaluate", str(tmp_path / "m.pt"), str(tmp_path)],
                 ["export-onnx", str(tmp_path / "m.pt"), "--out", str(tmp_path / "m.onnx")]):
        r = _mgr_without_torch(*args)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2, (args, r.stderr)
        assert len(lines) == 1 and "pip install 'mgr[train]'" in lines[0] and "torch" in lines[0], (args, r.stderr)
        assert r.stdout == ""
