"""``wtm``: the command line for tasks, pipelines, runs and the local stack.

Human output by default; ``--json`` prints machine-readable JSON instead. Built on click
(commands) and rich (tables, colour).

Output goes to stdout; errors go to stderr (with ``--json``, as one JSON object:
``{"error": {"code", "message", "field", "exit_code"}}``), without a traceback unless
``--debug``. Exit codes:

    0  done
    1  a run the command followed ended otherwise than COMPLETED
    2  usage: a bad option or argument (click's)
    3  the services refused the request (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
       FAILED_PRECONDITION, UNAUTHENTICATED, PERMISSION_DENIED, ...)
    4  a service could not be reached in time (UNAVAILABLE, DEADLINE_EXCEEDED)
    5  an unexpected error (a bug: --debug shows where)
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

import click

from clients import render
from clients.cli import keys, ops, pipelines, runs, schedules, stack, tasks  # noqa: F401 - they register commands
from clients.cli.app import cli
from clients.errors import DeadlineExceeded, RunError, Unavailable, WaitTimeoutError, WtmError

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNAVAILABLE = 4
EXIT_INTERNAL = 5


def exit_code_of(exc: BaseException) -> int:
    if isinstance(exc, RunError):
        return EXIT_RUN_FAILED
    if isinstance(exc, (Unavailable, DeadlineExceeded, WaitTimeoutError)):
        return EXIT_UNAVAILABLE
    if isinstance(exc, WtmError) and exc.code not in ("INTERNAL", "UNKNOWN"):
        return EXIT_REFUSED
    return EXIT_INTERNAL


def report(exc: BaseException, as_json: bool, debug: bool) -> int:
    """Say what went wrong on stderr (a line, or a JSON object); return the exit code."""
    code = exit_code_of(exc)
    if isinstance(exc, WtmError):
        error: dict[str, Any] = {"code": exc.code, "message": exc.message, "field": exc.field}
        if isinstance(exc, RunError):
            error["run_id"] = exc.run.run_id
    else:
        error = {"code": "INTERNAL", "message": f"{type(exc).__name__}: {exc}", "field": None}
    error["exit_code"] = code
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if as_json:
        click.echo(json.dumps({"error": error}), err=True)
    else:
        hint = "" if debug or code != EXIT_INTERNAL else " (--debug shows where)"
        render.errors.print(f"[red]error[/] {error['code']}: {escape(error['message'])}{hint}")
    return code


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def global_flags(args: list[str]) -> set[str]:
    """The options ``args`` give ``wtm`` itself, before the command: a command's own option of
    the same name (``wtm run signal ... --json DOC``) is not the global ``--json``."""
    valued = {
        o for p in cli.params if isinstance(p, click.Option) and not p.is_flag for o in p.opts
    }
    found, at = set(), 0
    while at < len(args) and args[at].startswith("-"):
        name = args[at].partition("=")[0]
        found.add(name)
        at += 2 if name in valued and "=" not in args[at] else 1
    return found


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    flags = global_flags(args)
    as_json, debug = "--json" in flags, "--debug" in flags
    try:
        cli.main(args=args, prog_name="wtm", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:  # usage: click's message and exit code (2)
        if as_json:
            error = {"code": "USAGE", "message": exc.format_message(), "field": None}
            click.echo(json.dumps({"error": {**error, "exit_code": exc.exit_code}}), err=True)
        else:
            exc.show()
        sys.exit(exc.exit_code)
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - every other failure: one line, an exit code
        sys.exit(report(exc, as_json, debug))


__all__ = ["EXIT_REFUSED", "EXIT_RUN_FAILED", "EXIT_UNAVAILABLE", "cli", "main"]
