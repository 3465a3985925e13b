"""The root ``wtm`` command group and what every subcommand shares."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.markup import escape

from clients import __version__, render
from clients.sdk import Client
from common import telemetry_setup


class Ctx:
    """Connection settings and output mode, passed to every subcommand."""

    def __init__(
        self,
        registry: str,
        scheduler: str,
        token: str,
        key_file: str,
        as_json: bool,
        namespace: str = "",
        retry_seconds: float = 10.0,
    ) -> None:
        self.retry_seconds = retry_seconds
        self.registry = registry
        self.scheduler = scheduler
        self.token = token
        self.key_file = key_file
        self.as_json = as_json
        self.namespace = namespace

    def client(self) -> Client:
        return Client(
            self.registry,
            self.scheduler,
            token=self.token,
            api_key_file=self.key_file,
            namespace=self.namespace,
            retry_seconds=self.retry_seconds,
        )

    def async_client(self, timeout: float = 30.0, retry_seconds: float | None = None) -> Any:
        """The asyncio client (``clients.aio.AsyncClient``) with the same settings; make it
        inside the event loop that uses it."""
        from clients.aio import AsyncClient

        return AsyncClient(
            self.registry,
            self.scheduler,
            timeout=timeout,
            api_key=self.token,
            api_key_file=self.key_file,
            namespace=self.namespace,
            retry_seconds=self.retry_seconds if retry_seconds is None else retry_seconds,
        )

    def out(self, value: Any, human: Any) -> None:
        """Print ``value`` as JSON with --json, else the human rendering."""
        if self.as_json:
            click.echo(render.as_json(value))
        else:  # a line of text (a URI, say) is not broken at the console's width
            render.console.print(human, soft_wrap=isinstance(human, str))


_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_span(text: str) -> float:
    """Seconds from "90", "90s", "5m", "2h", "1d"."""
    match = _SPAN.match(text)
    if not match:
        raise click.BadParameter(f"{text!r}: a number and s, m, h or d (90s, 5m, 1d)")
    return float(match.group(1)) * _UNIT[match.group(2)]


def parse_at(text: str, also: str = "") -> datetime:
    """A time from ISO 8601 text; without a zone, UTC (``also``: what else was allowed)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r}: {also}an ISO time, such as 2026-12-24T18:00:00Z"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_moment(text: str) -> datetime:
    """A time from "2h" (that long ago; s, m, h or d) or from ISO 8601 (no zone: UTC)."""
    if _SPAN.match(text):
        return datetime.now(UTC) - timedelta(seconds=parse_span(text))
    return parse_at(text, "a time ago (90s, 2h, 3d) or ")


def parsed_by(parse: Callable[[str], Any]) -> Callable[[Any, Any, str | None], Any]:
    """A click callback: the option's text through ``parse``, or None when it is absent."""
    return lambda _ctx, _param, value: None if value is None else parse(value)


run_timeout_option = click.option(
    "--run-timeout",
    callback=parsed_by(parse_span),
    help="the run's time limit, such as 30s, 10m, 2h: past it an unfinished run ends "
    "TIMED_OUT (default: none)",
)
start_delay_option = click.option(
    "--delay",
    "start_delay",
    callback=parsed_by(parse_span),
    help="start the run this long from now, such as 90s, 10m, 2h (recorded at once)",
)


def parse_json_object(text: str, hint: str) -> dict[str, Any]:
    """A JSON object from the command line: inline JSON, or @FILE."""
    if text.startswith("@"):
        try:
            with open(text[1:]) as fh:
                text = fh.read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {text[1:]}: {exc}", param_hint=hint) from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=hint) from exc
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint=hint)
    return value


def upload_inputs(obj: Ctx, client: Client, data: dict[str, Any]) -> dict[str, Any]:
    """Upload local files named by file fields (``image_path``...) and say so."""
    uploaded = client.upload_local_files(data)
    if not obj.as_json:
        for name, value in uploaded.items():
            if isinstance(data[name], str) and value != data[name]:  # NaN != NaN
                said = escape(f"uploaded {name} {data[name]} as {value}")
                render.console.print(said, soft_wrap=True)  # a URI to copy, whole on its line
    return uploaded


Alias = tuple[str, ...] | str  # the command it stands for (a path from the root), or a hint


class AliasedGroup(click.Group):
    """A group that also answers to the original (Celery-based) system's command names.
    An alias runs the command it stands for, saying so in one line on stderr; a name with
    no counterpart here prints a one-line hint and exits 2. Aliases are not listed."""

    def __init__(self, *args: Any, aliases: dict[str, Alias] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.aliases = aliases or {}

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        found = super().get_command(ctx, name)
        if found is not None or name not in self.aliases:
            return found
        target = self.aliases[name]
        if isinstance(target, str):
            return click.Command(
                name,
                callback=lambda: _hint(name, target),
                hidden=True,
                context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
            )
        command: click.Command | None = ctx.find_root().command
        for part in target:
            assert isinstance(command, click.Group)
            command = command.get_command(ctx, part)
        click.echo(f"({name!r} is `wtm {' '.join(target)}` here)", err=True)
        return command


def _hint(name: str, hint: str) -> None:
    click.echo(f"{name!r} has no counterpart here: {hint}", err=True)
    raise SystemExit(2)


ROOT_ALIASES: dict[str, Alias] = {
    "execute": ("run", "submit"),
    "executions": ("run", "list"),
    "status": ("executor", "list"),
    "workers": ("executor", "list"),
    "start": "start executors with `python -m services.executor` (`wtm stack up` locally); "
    "--concurrency is --slots (WTM_EXECUTOR_SLOTS), --queues is --queues",
}


@click.group(
    cls=AliasedGroup,
    aliases=ROOT_ALIASES,
    epilog="Exit codes: 0 done, 1 a followed run did not complete, 2 usage, 3 refused by "
    "the services, 4 a service out of reach or a wait timed out, 5 unexpected. Shell "
    "completion: "
    'eval "$(_WTM_COMPLETE=bash_source wtm)" (zsh_source, fish_source).',
)
@click.version_option(__version__, "--version", prog_name="wtm")
@click.option(
    "--registry",
    envvar="WTM_REGISTRY_ADDR",
    show_envvar=True,
    default="127.0.0.1:50051",
    show_default=True,
    help="registry address, host:port",
)
@click.option(
    "--scheduler",
    envvar="WTM_SCHEDULER_ADDR",
    show_envvar=True,
    default="127.0.0.1:50052",
    show_default=True,
    help="scheduler address, host:port",
)
@click.option(
    "--api-key",
    "token",
    envvar="WTM_API_KEY",
    show_envvar=True,
    default="",
    help="API key (or a file: --api-key-file)",
)
@click.option(
    "--api-key-file",
    "key_file",
    envvar="WTM_API_KEY_FILE",
    show_envvar=True,
    default="",
    help="file holding the API key",
)
@click.option(
    "--namespace",
    "-n",
    envvar="WTM_NAMESPACE",
    show_envvar=True,
    default="",
    help="namespace to act in; a key bound to one acts in it anyway; "
    "'*' lists runs of every namespace (keys of every namespace only)",
)
@click.option(
    "--json", "as_json", is_flag=True, help="print JSON for scripts (errors too, on stderr)"
)
@click.option(
    "--retry-seconds",
    type=click.FloatRange(0, 3600),
    envvar="WTM_RETRY_SECONDS",
    show_envvar=True,
    default=10.0,
    show_default=True,
    help="how long a call is retried while a service is unavailable",
)
@click.option("--debug", is_flag=True, help="show the traceback of an unexpected error")
@click.pass_context
def cli(
    ctx: click.Context,
    registry: str,
    scheduler: str,
    token: str,
    key_file: str,
    namespace: str,
    as_json: bool,
    retry_seconds: float,
    debug: bool,
) -> None:
    """Worker Task Manager: register tasks and pipelines, run them, watch them."""
    ctx.obj = Ctx(registry, scheduler, token, key_file, as_json, namespace, retry_seconds)
    if telemetry_setup.export_configured():  # OTEL_EXPORTER_OTLP_ENDPOINT: the trace starts here
        telemetry_setup.setup("wtm-cli", grpc_client="sync")
        ctx.call_on_close(telemetry_setup.shutdown)
