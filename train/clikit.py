"""One convention for every `mgr` command (typer and rich only; no torch).

* Results (tables, summaries, "wrote ...") go to ``out`` (stdout); errors, warnings and
  progress go to ``err`` (stderr), so ``mgr ... > result.txt`` keeps only results.
* A user error (bad flag value, missing file, unreadable checkpoint, full disk) is one line
  ``error: ...`` on stderr and exit code 2: ``raise fail(message)``, or wrap the work in
  ``with user_errors(): ...``. Typer's own usage errors exit 2 as well.
* An unexpected exception (a bug) is one line naming it and exit code 1; ``mgr --debug``
  prints the full traceback instead. ``run(app)`` does that around the whole app.
* Options that several packages declare are defined here once.
"""
from __future__ import annotations

import sys
import traceback
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["out", "err", "fail", "user_errors", "USER_ERRORS", "USER_ERROR_EXIT", "INTERNAL_ERROR_EXIT",
           "set_debug", "run", "POSE_MODEL_OPT", "JSON_OPT", "split_file_option", "device_option",
           "threads_option"]

out = Console()                 # results
err = Console(stderr=True)      # errors, warnings, progress

USER_ERROR_EXIT = 2
INTERNAL_ERROR_EXIT = 1

# ValueError covers mgr's checkpoint, dataset and artifact errors (all ValueErrors); OSError a
# missing file, a full disk, a read-only folder. Packages above add their own via user_errors(...).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)

_state = {"debug": False}

# What `pip install 'mgr[train]'` adds to the runtime install (training, evaluation, reports, ONNX export)
TRAIN_EXTRA_MODULES = ("torch", "torchvision", "matplotlib", "onnxscript")


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr (never wrapped: paths stay whole) and return the exit to raise."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)    # messages hold [brackets], e.g. mgr[trt]
    return typer.Exit(USER_ERROR_EXIT)


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Known failures (``USER_ERRORS`` plus ``extra``) become one ``error:`` line and exit code 2."""
    try:
        yield
    except (*USER_ERRORS, *extra) as e:
        raise fail(str(e)) from e


def set_debug(on: bool) -> None:
    """``mgr --debug``: let ``run`` print full tracebacks of unexpected exceptions."""
    _state["debug"] = bool(on)


def run(app: typer.Typer, args: Optional[list[str]] = None, prog_name: str = "mgr") -> None:
    """Run ``app`` the standard way (usage errors exit 2), turning an unexpected exception into exit 1."""
    try:
        app(args=args, prog_name=prog_name)
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in TRAIN_EXTRA_MODULES:
            raise
        fail(f"this command needs mgr's training extra ({e.name} is not installed in this runtime-only "
             f"install): pip install 'mgr[train]'  (from a clone: pip install -e \".[train]\")")
        sys.exit(USER_ERROR_EXIT)
    except Exception as e:   # noqa: BLE001 - the top of the program: nothing above to handle it
        if _state["debug"]:
            traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
        else:
            detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            err.print(f"[bold red]internal error:[/] {escape(detail)} (rerun with --debug for the traceback)",
                      soft_wrap=True)
        sys.exit(INTERNAL_ERROR_EXIT)


# ----------------------------------------------------------------------------- shared options
POSE_MODEL_OPT: Any = typer.Option(
    None, "--pose-model", help="MediaPipe pose .task file (else $MGR_POSE_MODEL, else the cached download).")
JSON_OPT: Any = typer.Option(None, "--json", help="Also write the results here as JSON.")


def split_file_option(without: str) -> Any:
    """``--split-file PATH``; ``without`` says what the command uses when it is not given."""
    return typer.Option(None, "--split-file", help=f"A saved split.json (a run's RUN/split.json). Without it: {without}.")


def device_option(default: str = "auto") -> Any:
    """``--device``: ``auto`` (cuda if available) where the command supports it, else cpu | cuda."""
    choices = "auto (cuda if available) | cpu | cuda" if default == "auto" else "cpu | cuda"
    return typer.Option(default, "--device", help=f"{choices}.")


def threads_option(default: Optional[int]) -> Any:
    """``--threads N`` for the model runtime; ``None``: the runtime's own default."""
    tail = "" if default is not None else " (default: the runtime's own)"
    return typer.Option(default, "--threads", min=1, help=f"Threads for the model runtime (torch, onnxruntime){tail}.")

