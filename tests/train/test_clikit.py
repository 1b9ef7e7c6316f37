"""mgr.train.clikit: one CLI convention (errors on stderr, exit 2 for user errors, 1 for bugs)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from mgr.train import clikit


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def mgr_app():
    from mgr.realtime.cli import app
    return app


@pytest.mark.parametrize("args, words", [
    (["report", "/nonexistent/run"], "not a training run"),                      # mgr.train
    (["bench", "models", "model.foo"], "unknown model suffix '.foo'"),           # mgr.engines
    (["live"], "give exactly one of --camera INDEX"),                            # mgr.realtime
], ids=["train", "engines", "realtime"])
def test_a_user_error_is_one_line_on_stderr_and_exit_2(mgr_app, args, words):
    res = CliRunner().invoke(mgr_app, args)
    assert res.exit_code == clikit.USER_ERROR_EXIT == 2, res.output
    assert res.stderr.startswith("error: ") and words in flat(res.stderr), res.stderr
    assert res.stdout == ""
    assert "Traceback" not in res.output


def test_fail_prints_unwrapped_and_escaped(capsys):
    long_path = "/very/" + "long/" * 40 + "model[trt].onnx"
    with pytest.raises(typer.Exit) as ex:
        raise clikit.fail(f"{long_path}: not found")
    assert ex.value.exit_code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"error: {long_path}: not found\n"   # one line, [trt] kept


def test_user_errors_maps_known_types_and_passes_others(capsys):
    class Custom(RuntimeError):
        pass

    for exc, types in ((ValueError("bad value"), ()), (FileNotFoundError("no file"), ()), (Custom("custom"), (Custom,))):
        with pytest.raises(typer.Exit) as ex, clikit.user_errors(*types):
            raise exc
        assert ex.value.exit_code == 2 and capsys.readouterr().err == f"error: {exc}\n"
    with pytest.raises(ZeroDivisionError), clikit.user_errors():      # a bug is not a user error
        raise ZeroDivisionError("bug")
    assert capsys.readouterr().err == ""


def _boom(*_a, **_k):
    raise ZeroDivisionError("kaput [detail]")


def _run_main(monkeypatch, argv):
    from mgr.realtime import cli, doctor
    monkeypatch.setattr(doctor, "run_checks", _boom)          # `mgr doctor` hits an unexpected exception
    monkeypatch.setitem(clikit._state, "debug", False)
    monkeypatch.setattr(sys, "argv", ["mgr", *argv])
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # typer installs its own hook: restore it afterwards
    with pytest.raises(SystemExit) as ex:
        cli.main()
    return ex.value.code


def test_an_internal_error_is_one_line_and_exit_1(monkeypatch, capsys):
    code = _run_main(monkeypatch, ["doctor"])
    captured = capsys.readouterr()
    assert code == clikit.INTERNAL_ERROR_EXIT == 1
    assert "Traceback" not in captured.err and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "ZeroDivisionError: kaput [detail]" in lines[0] and "rerun with --debug for the traceback" in lines[0]


def test_debug_prints_the_traceback(monkeypatch, capsys):
    code = _run_main(monkeypatch, ["--debug", "doctor"])
    captured = capsys.readouterr()
    assert code == 1
    assert "Traceback (most recent call last)" in captured.err and "_boom" in captured.err
    assert "ZeroDivisionError: kaput [detail]" in captured.err and "rerun with --debug" not in captured.err


def test_usage_errors_keep_typer_message_and_exit_2(monkeypatch, capsys):
    code = _run_main(monkeypatch, ["live", "--no-such-flag"])
    captured = capsys.readouterr()
    assert code == 2 and "No such option" in captured.err and "Usage:" in captured.err


def test_the_mgr_program_exits_1_on_internal_errors_without_a_traceback(tmp_path):
    code = ("import sys\nfrom mgr.realtime import doctor\nfrom mgr.realtime.cli import main\n"
            "def boom(*a, **k):\n    raise KeyError('deep inside')\n"
            "doctor.run_checks = boom\nsys.argv = ['mgr', *sys.argv[1:]]\nmain()\n")
    plain = subprocess.run([sys.executable, "-c", code, "doctor"], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr and "KeyError" in plain.stderr, plain.stderr
    assert plain.stdout == ""
    debug = subprocess.run([sys.executable, "-c", code, "--debug", "doctor"], capture_output=True, text=True,
                           timeout=120)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr, debug.stderr


def test_shared_options_are_defined_once():
    """--pose-model, --threads, --json, --device, --split-file: clikit's definitions everywhere."""
    import inspect

    from mgr.engines import cli as engines_cli
    from mgr.realtime import cli as rt_cli
    from mgr.realtime import commands
    from mgr.train import cli as train_cli
    flags: dict[str, list] = {}
    for mod in (train_cli, engines_cli, commands, rt_cli):
        for fn in vars(mod).values():
            if inspect.isfunction(fn) and fn.__module__ == mod.__name__:
                for p in inspect.signature(fn).parameters.values():
                    d = p.default
                    decls = getattr(d, "param_decls", None) or ()
                    for flag in ("--pose-model", "--json", "--threads", "--device", "--split-file"):
                        if flag in decls or (p.name == flag[2:].replace("-", "_") and hasattr(d, "param_decls")):
                            flags.setdefault(flag, []).append((mod.__name__, fn.__name__, d))
    assert {"--pose-model", "--json", "--threads", "--device", "--split-file"} <= set(flags), flags.keys()
    assert all(d is clikit.POSE_MODEL_OPT for _, _, d in flags["--pose-model"]), flags["--pose-model"]
    assert all(d is clikit.JSON_OPT for _, _, d in flags["--json"]), flags["--json"]
    for flag in ("--threads", "--device", "--split-file"):      # factory-made: same flag, help and checks
        for _, _, d in flags[flag]:
            assert flag in d.param_decls, (flag, d.param_decls)
