"""The `mgr` command line. Only this layer prints; library code logs.

Each package contributes its commands through ``register(app)``; realtime sits at the top
of the dependency chain (realtime -> engines -> train), so it may assemble them all.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from rich.logging import RichHandler

from mgr.engines import cli as engines_cli
from mgr.realtime import commands as realtime_commands
from mgr.train import cli as train_cli
from mgr.train.clikit import POSE_MODEL_OPT, USER_ERRORS, err, fail, out as stdout, run, set_debug

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="mgr: real-time micro-gesture recognition (iMiGUE, 32 classes).")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: training throughput, runtimes, soak.")
app.add_typer(bench_app, name="bench")


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
          debug: bool = typer.Option(False, "--debug", help="On an internal error, print the full traceback.")) -> None:
    set_debug(debug)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=err, show_time=False, show_path=False)], force=True)


train_cli.register(app, bench_app)
engines_cli.register(app, bench_app)
realtime_commands.register(app, bench_app)


@app.command()
def demo(out: Path = typer.Option(Path("mgr-demo"), "--out", help="Folder for everything the demo makes."),
         fresh: bool = typer.Option(False, "--fresh", help="Redo every step instead of reusing outputs."),
         clips: int = typer.Option(512, help="Synthetic clips."), epochs: int = typer.Option(10, help="Training epochs."),
         pose_model: Optional[Path] = POSE_MODEL_OPT) -> None:
    """The whole product on SYNTHETIC data: generate, train, evaluate, export, benchmark, replay."""
    from .demo import DemoConfig, run_demo_cli
    try:
        run_demo_cli(DemoConfig(out=out, clips=clips, epochs=epochs, fresh=fresh,
                                pose_model=str(pose_model) if pose_model else None))
    except USER_ERRORS as e:     # unwritable --out, disk full, bad reuse (checkpoint, artifact errors are ValueErrors)
        raise fail(f"{e}\n(the demo reuses finished steps: rerun it once the cause is fixed, or add --fresh)") from e


@app.command()
def doctor(pose_model: Optional[Path] = POSE_MODEL_OPT,
           cameras: int = typer.Option(4, help="Camera indices to try (0..N-1).")) -> None:
    """Check Python, torch/CUDA, onnxruntime, TensorRT, MediaPipe and the pose model, OpenCV, cameras, caches."""
    from rich.markup import escape
    from rich.table import Table

    from .doctor import run_checks
    table = Table(title="mgr doctor")
    for col in ("check", "status", "found", "what to do"):
        table.add_column(col, overflow="fold")          # paths and URLs whole, never cut with an ellipsis
    checks = run_checks(str(pose_model) if pose_model else None, cameras)
    for c in checks:
        status = "[green]OK[/green]" if c.ok else "[red]FIX[/red]" if c.ok is False else "[yellow]--[/yellow]"
        table.add_row(c.name, status, escape(c.detail), escape(c.action))
    stdout.print(table)
    if any(c.ok is False for c in checks):
        raise typer.Exit(1)


# options whose value may be left out: `--lsl` alone means `--lsl mgr`
OPTIONAL_VALUES = {"--lsl": "mgr"}


def optional_values(argv: list[str]) -> list[str]:
    """Give a bare optional-value option its default: the next word is its value unless it starts with '-'."""
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg in OPTIONAL_VALUES and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append(OPTIONAL_VALUES[arg])
    return out


def main() -> None:
    import sys
    sys.argv = optional_values(sys.argv)
    run(app, prog_name="mgr")      # usage errors exit 2, user errors 2, internal errors 1 (--debug: traceback)


if __name__ == "__main__":
    main()
