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

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="mgr: real-time micro-gesture recognition (iMiGUE, 32 classes).")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: training throughput, runtimes, soak.")
app.add_typer(bench_app, name="bench")


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(show_time=False, show_path=False)], force=True)


train_cli.register(app, bench_app)
engines_cli.register(app, bench_app)
realtime_commands.register(app, bench_app)


@app.command()
def demo(out: Path = typer.Option(Path("mgr-demo"), "--out", help="Folder for everything the demo makes."),
         fresh: bool = typer.Option(False, "--fresh", help="Redo every step instead of reusing outputs."),
         clips: int = typer.Option(320, help="Synthetic clips."), epochs: int = typer.Option(8, help="Training epochs."),
         pose_model: Optional[Path] = typer.Option(None, "--pose-model", help="MediaPipe pose .task file.")) -> None:
    """The whole product on SYNTHETIC data: generate, train, evaluate, export, benchmark, replay."""
    from .demo import DemoConfig, run_demo_cli
    run_demo_cli(DemoConfig(out=out, clips=clips, epochs=epochs, fresh=fresh,
                            pose_model=str(pose_model) if pose_model else None))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
