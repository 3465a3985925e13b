"""Service settings from flags and environment variables, validated with clear errors.

A service declares its settings as a dataclass whose fields carry ``setting(...)`` metadata:
the environment variable, the help text and an optional check. ``load_settings`` builds an
argparse parser from it: a flag overrides the variable, which overrides the default. A bad
value exits with status 2 and a message naming both the flag and the variable.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def setting(
    default: Any,
    env: str,
    help: str,  # noqa: A002 - mirrors argparse
    check: Callable[[Any], str | None] | None = None,
    secret: bool = False,
) -> Any:
    """Declare one setting: its default, environment variable, help, and optional check.

    ``check`` returns an error message for a bad value, or None. A ``secret`` setting is left
    out of the settings' ``repr`` (so out of logs).
    """
    return dataclasses.field(
        default=default, repr=not secret, metadata={"env": env, "help": help, "check": check}
    )


def list_setting(
    env: str,
    help: str,  # noqa: A002 - mirrors argparse
    check: Callable[[list[str]], str | None] | None = None,
    default: tuple[str, ...] = (),
) -> Any:
    """Declare a comma-separated setting, as ``setting`` does one value."""
    return dataclasses.field(
        default_factory=lambda: list(default),
        metadata={"env": env, "help": help, "check": check},
    )


def server_tls(settings: Any) -> tuple[str, str] | None:
    """(certificate, key) to serve TLS with, or None for plaintext (only when WTM_TLS=false)."""
    if settings.tls_cert and settings.tls_key:
        return settings.tls_cert, settings.tls_key
    if settings.tls:
        raise SystemExit(
            "TLS is on but WTM_TLS_CERT / WTM_TLS_KEY are not set: give a certificate and key, "
            "or set WTM_TLS=false to serve plaintext (development only)"
        )
    return None


def read_secret(value: str, path: str, what: str) -> str:
    """A secret given directly or (preferred: it stays out of the environment) in a file."""
    if value:
        return value.strip()
    if not path:
        return ""
    try:
        return open(path).read().strip()  # noqa: SIM115 - read whole, at once
    except OSError as exc:
        raise SystemExit(f"cannot read {what} from {path}: {exc.strerror}") from exc


def positive(value: Any) -> str | None:
    """Check that a number is greater than zero."""
    return None if value > 0 else "must be greater than 0"


def non_negative(value: Any) -> str | None:
    """Check that a number is zero or more."""
    return None if value >= 0 else "must be 0 or more"


def namespace_values(entries: list[str], convert: Callable[[str], T]) -> dict[str, T]:
    """``["team-a=3", " team-b = 5"]`` (a per-namespace setting, checked by
    ``namespace_values_problem``) as {namespace: convert(value)}."""
    return {ns.strip(): convert(v.strip()) for ns, _, v in (e.partition("=") for e in entries)}


def namespace_values_problem(
    entries: list[str],
    what: str,
    convert: Callable[[str], Any],
    kind: str,
    check: Callable[[Any], str | None] = lambda value: None,
) -> str | None:
    """Why a per-namespace setting is not a list of NAMESPACE=<what>, each value one that
    ``convert`` takes (else "the <what> must be <kind>") and ``check`` passes, or None."""
    for entry in entries:
        namespace, eq, value = entry.partition("=")
        if not eq or not namespace.strip() or namespace.strip() == "*":
            return f"{entry!r} is not NAMESPACE={what.upper()}"
        try:
            problem = check(convert(value.strip()))
        except ValueError:
            problem = f"must be {kind}"
        if problem:
            return f"{entry!r}: the {what} {problem}"
    return None


def readable_file(value: str) -> str | None:
    """Check that a path (when one is given) names a file this process can read."""
    if value and not os.access(value, os.R_OK):
        return f"cannot read {value!r}"
    return None


def host_port(value: str) -> str | None:
    """Check that an address looks like HOST:PORT with a numeric port."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return "must be HOST:PORT, e.g. 127.0.0.1:50051"
    return None


def _convert(kind: Any, raw: str) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError("must be true or false")
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    if typing.get_origin(kind) is list:
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def load_settings(cls: type[T], argv: Sequence[str] | None = None, prog: str | None = None) -> T:
    """Parse ``argv`` and the environment into an instance of the settings dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    parser = argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or "").strip())
    fields = [f for f in dataclasses.fields(cls) if "env" in f.metadata]  # type: ignore[arg-type]
    defaults = {
        f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        for f in fields
    }
    for f in fields:
        flag = "--" + f.name.replace("_", "-")
        default = defaults[f.name]
        shown = ",".join(default) if isinstance(default, list) else default
        parser.add_argument(
            flag,
            dest=f.name,
            default=None,
            help=f"{f.metadata['help']} (env {f.metadata['env']}; default {shown!r})",
        )
    ns = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for f in fields:
        flag = "--" + f.name.replace("_", "-")
        env = f.metadata["env"]
        raw = getattr(ns, f.name)
        if raw is None and env in os.environ:
            raw = os.environ[env]
        if raw is None:
            value = defaults[f.name]
        else:
            try:
                value = _convert(hints[f.name], raw)
            except ValueError as exc:
                reason = str(exc) if "must" in str(exc) else f"must be {hints[f.name].__name__}"
                parser.error(f"{flag} / {env}: {reason}, got {raw!r}")
        check = f.metadata.get("check")
        problem = check(value) if check is not None else None
        if problem:
            parser.error(f"{flag} / {env}: {problem}, got {value!r}")
        values[f.name] = value
    settings = cls(**values)
    problem = getattr(settings, "problem", None)  # what no one setting shows alone
    if callable(problem) and (message := problem()):
        parser.error(message)
    return settings


@dataclasses.dataclass
class MongoSettings:
    """Where a service keeps its records, and how long it waits on them."""

    mongodb_uri: str = setting(
        "mongodb://127.0.0.1:27017",
        "WTM_MONGODB_URI",
        "MongoDB URI (TLS: ?tls=true, &tlsCAFile=/path for a private CA)",
    )
    mongodb_database: str = setting("wtm", "WTM_MONGODB_DATABASE", "MongoDB database name")
    mongodb_timeout: float = setting(
        10.0,
        "WTM_MONGODB_TIMEOUT",
        "seconds any one MongoDB operation may take, waiting for a server included; past it "
        "a call fails UNAVAILABLE instead of waiting on a stalled MongoDB (writes behind are "
        "kept and tried again)",
        positive,
    )


@dataclasses.dataclass
class ServerTlsSettings:
    """What every server's settings add for TLS (the gateway's too)."""

    tls: bool = setting(
        True,
        "WTM_TLS",
        "serve TLS (needs WTM_TLS_CERT and WTM_TLS_KEY); false serves plaintext: an explicit "
        "opt-out, for development",
    )
    tls_cert: str = setting("", "WTM_TLS_CERT", "PEM certificate chain to serve TLS with")
    tls_key: str = setting("", "WTM_TLS_KEY", "PEM private key of that certificate")


@dataclasses.dataclass
class ServerAuthSettings(ServerTlsSettings):
    """What every gRPC server's settings add: TLS, whether keys are required, where they
    live."""

    auth: bool = setting(
        True,
        "WTM_AUTH",
        "require an API key on every call (false: anyone may do anything; development only)",
    )
    auth_database: str = setting(
        "",
        "WTM_AUTH_DATABASE",
        "MongoDB database of the API keys and the audit log (empty: WTM_MONGODB_DATABASE); "
        "every service of an installation must use the same",
    )
    key_cache_seconds: float = setting(
        5.0,
        "WTM_KEY_CACHE_SECONDS",
        "how long a verified key is trusted before MongoDB is asked again (a revocation "
        "takes effect within this)",
        non_negative,
    )
    audit_retention_days: float = setting(
        365.0,
        "WTM_AUDIT_RETENTION_DAYS",
        "how long the audit log keeps an event (0: for good); pruned hourly",
        non_negative,
    )
    calls_per_second: float = setting(
        0.0,
        "WTM_CALLS_PER_SECOND",
        "calls a second each namespace may make to one replica of this service (bursts of "
        "twice that); past it a call is RESOURCE_EXHAUSTED naming the namespace. Executors "
        "and services are not counted, nor an executor's stream. 0: no limit",
        non_negative,
    )


@dataclasses.dataclass
class ClientKeySettings:
    """What a service that calls another adds: the CA it trusts, the API key it presents."""

    tls_ca: str = setting(
        "",
        "WTM_TLS_CA",
        "PEM CA the other services' certificates are checked against (empty: plaintext)",
    )

    api_key: str = setting(
        "", "WTM_API_KEY", "API key to present to the other services", secret=True
    )
    api_key_file: str = setting("", "WTM_API_KEY_FILE", "file holding the API key (preferred)")
