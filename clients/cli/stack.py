"""``wtm stack up`` and ``wtm demo``: the local stack."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import click

from clients.cli.app import cli


@cli.group()
def stack() -> None:
    """The local stack: backing servers and the three services on 127.0.0.1."""


@stack.command("up")
@click.option(
    "--dir", "root", default=".wtm/stack", show_default=True, type=click.Path(path_type=Path)
)
@click.option("--executors", default=1, show_default=True)
def stack_up(root: Path, executors: int) -> None:
    """Start everything in the foreground; Ctrl-C stops it all. Auth is on: the exports
    include WTM_API_KEY_FILE, the path of an admin key for this stack."""
    from services.localstack import Cluster

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Cluster(root, executors=executors) as cluster:
        click.echo(f"export WTM_REGISTRY_ADDR={cluster.registry_address}")
        click.echo(f"export WTM_SCHEDULER_ADDR={cluster.scheduler_address}")
        click.echo(f"export WTM_GATEWAY_URL={cluster.gateway_url}")
        click.echo(f"export WTM_TLS_CA={cluster.ca_file.resolve()}")
        # The admin key stays in its file (mode 0600): only its path is printed.
        click.echo(f"export WTM_API_KEY_FILE={cluster.key_files['admin'].resolve()}", nl=True)
        sys.stdout.flush()
        click.echo(f"# logs in {root}/logs; Ctrl-C to stop", err=True)
        if os.geteuid() != 0:  # the executors say the same in `wtm executor list`
            click.echo(
                "# not root: executors confine task code by resource limits only; it runs as "
                'you, on your network (README: "Who may do what")',
                err=True,
            )
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


@cli.command()
@click.option(
    "--dir", "root", default=".wtm/demo", show_default=True, type=click.Path(path_type=Path)
)
@click.option(
    "--keep/--no-keep",
    default=None,
    help="keep everything running after the result, for the dashboard, until Enter "
    "(default: when run from a terminal)",
)
def demo(root: Path, keep: bool | None) -> None:
    """Start the local stack and services, register the examples, run the face pipeline,
    print it and the dashboard's address; then stop (or keep running: --keep)."""
    from clients.demo import run_demo

    sys.exit(run_demo(root, keep))
