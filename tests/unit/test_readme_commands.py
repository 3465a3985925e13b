"""Every ``wtm`` command line in the README's shell blocks parses: its command exists and its
options and arguments are the CLI's (nothing is run). A renamed command or option fails here
instead of in a newcomer's terminal. ``test_readme.py`` runs the README's Python tour."""

from __future__ import annotations

import re
import shlex

import click
import pytest

from clients.cli.app import cli
from tests.conftest import ROOT

README = ROOT / "README.md"
# The README's stand-ins for a file of the reader's, as files that exist here.
PLACEHOLDERS = {
    "FILE": "tasks/pipelines/config_pipeline.json",
    "photo.jpg": "tasks/data/astronaut.jpg",
}


def command_lines(markdown: str) -> list[str]:
    """The ``wtm`` lines of the shell blocks, continuation lines joined, comments dropped."""
    found = []
    for block in re.findall(r"^```sh\n(.*?)^```", markdown, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith((".venv/bin/wtm ", "wtm ")):
                found.append(re.split(r"\s+#", line, maxsplit=1)[0].strip())
    return found


def _rest(ctx: click.Context) -> list[str]:
    """What a group's context left for its subcommand (click 8.2 renamed the attribute)."""
    protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
    return [*protected, *ctx.args]


def parse(args: list[str]) -> str:
    """Parse ``args`` as ``wtm`` would, down to the command they name; its path."""
    ctx = cli.make_context("wtm", args)
    command: click.Command = cli
    path = ["wtm"]
    while isinstance(command, click.Group):
        rest = _rest(ctx)
        if not rest:
            break
        name, sub, rest = command.resolve_command(ctx, rest)
        assert name is not None and sub is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        command, path = sub, [*path, name]
    assert not isinstance(command, click.Group) or not _rest(ctx)
    assert not ctx.args, f"left over: {ctx.args}"
    return " ".join(path)


LINES = command_lines(README.read_text())


def test_the_readme_has_command_lines() -> None:
    assert len(LINES) >= 40  # the parse below would pass on none


@pytest.mark.parametrize("line", LINES)
def test_a_readme_command_line_parses(line: str) -> None:
    args = [PLACEHOLDERS.get(a, a) for a in shlex.split(line)[1:]]
    try:
        parse(args)
    except click.ClickException as exc:
        pytest.fail(f"{line}: {exc.format_message()}")
