"""``wtm auth``: API keys (create, list, revoke) and the audit log. Needs an admin key."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from clients import render
from clients.cli.app import Ctx, cli

ROLES = ["admin", "developer", "operator", "submitter", "viewer", "executor", "service"]


@cli.group()
def auth() -> None:
    """API keys and the audit log (an admin key is needed)."""


@auth.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="what the key may do")
@click.option("--namespace", default="default", show_default=True, help="where it acts")
@click.option("--ttl", "ttl_seconds", type=float, default=0, help="seconds until it expires")
@click.pass_obj
def auth_create(obj: Ctx, name: str, role: str, namespace: str, ttl_seconds: float) -> None:
    """Make a key. Its secret is printed once, on stdout alone: keep it, it is not stored."""
    with obj.client() as client:
        key, secret = client.create_api_key(name, role, namespace, ttl_seconds)
    if obj.as_json:
        obj.out({"key": key, "secret": secret}, "")
    else:
        click.echo(
            f"created key {key.key_id} ({key.role} in {key.namespace}); its secret:", err=True
        )
        click.echo(secret)


@auth.command("new-key")
def auth_new_key() -> None:
    """Print a fresh key (for a .env file's bootstrap keys); nothing is contacted."""
    from common.api_keys import new_key

    click.echo(new_key()[1])


@auth.command("list")
@click.pass_obj
def auth_list(obj: Ctx) -> None:
    """The keys this admin manages (never their secrets)."""
    with obj.client() as client:
        keys = client.list_api_keys()
    obj.out(keys, render.keys_table(keys, everywhere=obj.namespace == "*"))


@auth.command("revoke")
@click.argument("key_id")
@click.pass_obj
def auth_revoke(obj: Ctx, key_id: str) -> None:
    """Revoke a key (services stop accepting it within WTM_KEY_CACHE_SECONDS)."""
    with obj.client() as client:
        key = client.revoke_api_key(key_id)
    obj.out(key, f"revoked {key.key_id} ({key.name})")


@auth.command("audit")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.pass_obj
def auth_audit(obj: Ctx, limit: int) -> None:
    """Recorded mutations, newest first: who did what, where, when, and how it ended."""
    with obj.client() as client:
        events = client.list_audit_events(limit)
    table = Table(title="Audit")
    for col in ("time", "method", "principal", "role", "namespace", "outcome"):
        table.add_column(col)
    for e in events:
        table.add_row(
            f"{e['time']:%H:%M:%S}" if e["time"] else "",
            e["method"],
            e["principal"],
            e["role"],
            e["namespace"],
            e["outcome"],
        )
    obj.out(events, render.when_empty(table, "No event recorded."))


@cli.group()
def tls() -> None:
    """TLS certificates for an installation."""


@tls.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--host",
    "hosts",
    multiple=True,
    default=("registry", "scheduler", "localhost", "127.0.0.1"),
    show_default=True,
    help="names the certificate is for (repeat)",
)
def tls_init(directory: Path, hosts: tuple[str, ...]) -> None:
    """Make a private CA, a server certificate for HOSTS and the executors' client
    certificate in DIRECTORY (ca.pem, server.pem, server.key, executor.pem, executor.key),
    e.g. for docker compose. Rotate by running it again and restarting."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="Worker Task Manager")
    cert = ca.issue_cert(*hosts)
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    cert.private_key_pem.write_to_path(str(directory / "server.key"))
    (directory / "server.key").chmod(0o600)
    with open(directory / "server.pem", "wb") as fh:
        for blob in cert.cert_chain_pems:
            fh.write(blob.bytes())
    executor = ca.issue_cert("wtm-executor", common_name="wtm-executor")
    executor.private_key_pem.write_to_path(str(directory / "executor.key"))
    (directory / "executor.key").chmod(0o600)
    executor.cert_chain_pems[0].write_to_path(str(directory / "executor.pem"))
    click.echo(
        f"wrote {directory}/ca.pem, server.pem, server.key for {', '.join(hosts)}, "
        "and executor.pem, executor.key (the executors' client certificate)"
    )
