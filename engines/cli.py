"""CLI commands of this package, added to the `mgr` app by realtime.cli."""
from __future__ import annotations

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this package's commands to ``app`` (and benchmarks to ``bench_app``)."""
