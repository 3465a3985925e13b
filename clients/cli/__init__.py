"""``wtm``: the command line for tasks, pipelines, runs and the local stack.

Human output by default; ``--json`` prints machine-readable JSON instead. Built on click
(commands) and rich (tables, colour).
"""

from __future__ import annotations

import sys

from clients import render
from clients.cli import keys, pipelines, runs, stack, tasks  # noqa: F401 - they register commands
from clients.cli.app import cli
from clients.sdk import ApiError


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ApiError as exc:
        render.console.print(f"[red]error[/] {exc.code}: {exc.message}")
        sys.exit(2)


__all__ = ["cli", "main"]
