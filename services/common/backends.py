"""Clients for the backing services, built from settings. The only place they are created."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pymongo
import redis.asyncio as aioredis
import urllib3
from minio import Minio
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from services.common.config import readable_file


def mongo_options(timeout_s: float) -> dict[str, Any]:
    """What every MongoDB client here is made with: times as aware datetimes, and no
    operation waits longer than ``timeout_s`` (pymongo's ``timeoutMS``, per operation, a
    cursor's each batch; waiting for a server included): a MongoDB that stalls — stopped,
    partitioned, swapping — fails the call UNAVAILABLE instead of holding it until the
    caller's deadline, or for good without one."""
    return {
        "tz_aware": True,
        "serverSelectionTimeoutMS": min(5000, int(timeout_s * 1000)),
        "timeoutMS": int(timeout_s * 1000),
    }


def mongo_database(uri: str, database: str, timeout_s: float) -> pymongo.database.Database:
    """A MongoDB database handle (the connection is made lazily)."""
    client: pymongo.MongoClient = pymongo.MongoClient(uri, **mongo_options(timeout_s))
    return client[database]


SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # -> TLS


@dataclass(frozen=True)
class SentinelAddress:
    """``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
    [?sentinel_password=...]``: the sentinels to ask (port 26379 by default), the name they
    monitor the primary under, the database, and the data nodes' credentials (the
    sentinels' own password, if they have one, as ``sentinel_password``).
    ``rediss+sentinel://`` speaks TLS to the data nodes, checked against the system's CAs or
    the one named by ``ssl_ca_certs=/path`` in the query (as for ``rediss://``)."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    tls: bool = False
    tls_ca_file: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelAddress:
        parsed = urlparse(url)
        hosts = parsed.netloc.rpartition("@")[2]
        sentinels = []
        for host in hosts.split(","):
            name, _, port = host.rpartition(":") if ":" in host else (host, "", "")
            if not name or (port and not port.isdigit()):
                raise ValueError(f"WTM_REDIS_URL: sentinel {host!r} is not host[:port]")
            sentinels.append((name, int(port or 26379)))
        path = [p for p in parsed.path.split("/") if p]
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ValueError(
                "WTM_REDIS_URL: a sentinel URL ends in /<service name>[/<db>], e.g. "
                "redis+sentinel://sentinel-1:26379,sentinel-2:26379/wtm-primary/0"
            )
        query = parse_qs(parsed.query)
        return cls(
            tuple(sentinels),
            path[0],
            int(path[1]) if len(path) == 2 else 0,
            unquote(parsed.username) if parsed.username else None,
            unquote(parsed.password) if parsed.password else None,
            query.get("sentinel_password", [None])[0],
            SENTINEL_SCHEMES[parsed.scheme],
            query.get("ssl_ca_certs", [None])[0],
        )


def redis_url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL setting (``None``: nothing we can tell before
    connecting)."""
    scheme = urlparse(url).scheme
    if scheme in SENTINEL_SCHEMES:
        try:
            SentinelAddress.parse(url)
        except ValueError as exc:
            return str(exc).removeprefix("WTM_REDIS_URL: ")
        return _ca_file_problem(url)
    if scheme not in ("redis", "rediss", "unix"):
        return f"scheme {scheme!r}: use redis://, rediss://, unix:// or redis+sentinel://"
    if scheme != "rediss" and any(k.startswith("ssl_") for k in parse_qs(urlparse(url).query)):
        return "ssl_ options are for TLS: use rediss://"
    return _ca_file_problem(url)


def _ca_file_problem(url: str) -> str | None:
    for path in parse_qs(urlparse(url).query).get("ssl_ca_certs", []):
        if problem := readable_file(path):
            return f"ssl_ca_certs: {problem}"
    return None


def redis_client(url: str, socket_timeout: float = 30) -> aioredis.Redis:
    """An asyncio Redis client, for a ``redis://`` (``rediss://``, ``unix://``) URL or a
    Sentinel one (``SentinelAddress``): then every connection asks the sentinels where the
    primary is when it connects, so after a failover the next connection finds the promoted
    replica. A command that finds its connection closed (Redis restarted or failed over, or
    a proxy or the server's idle timeout dropped it) goes again on a fresh connection, up
    to 3 times with jittered backoff: redis-py's ``from_url`` retries nothing unless told,
    and the first call on each dropped pooled connection would fail. Only connection errors
    are retried; a timeout is not (the script may be running)."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "retry": Retry(
            ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3, (RedisConnectionError,)
        ),
        "retry_on_error": [RedisConnectionError],
    }
    if urlparse(url).scheme not in SENTINEL_SCHEMES:
        return aioredis.Redis.from_url(url, **options)
    address = SentinelAddress.parse(url)
    if address.tls_ca_file:
        options["ssl_ca_certs"] = address.tls_ca_file
    sentinels = Sentinel(
        list(address.sentinels),
        sentinel_kwargs={"socket_timeout": 5, "password": address.sentinel_password},
    )
    return sentinels.master_for(
        address.service,
        db=address.db,
        username=address.username,
        password=address.password,
        ssl=address.tls,
        **options,
    )


def s3_client(endpoint: str, access_key: str, secret_key: str, ca_file: str = "") -> Minio:
    """An S3 client for ``http(s)://host:port`` or plain ``host:port`` (plain HTTP). Over
    https the server's certificate is checked against ``ca_file`` when one is named (a
    private CA's, ``WTM_S3_CA_FILE``), else against certifi's CAs, as minio's own client
    does (which reads ``SSL_CERT_FILE`` instead: a process-wide setting)."""
    parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    http = None
    if ca_file:  # minio's own pool, but for the CA
        minutes = 5 * 60
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=minutes, read=minutes),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_file,
            retries=urllib3.Retry(
                total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
    return Minio(
        parsed.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=parsed.scheme == "https",
        http_client=http,
    )


def unreachable(what: str, setting: str, exc: BaseException) -> SystemExit:
    """The exit of a service that could not reach a backing store at start: what failed,
    which setting points at it, and the root cause (not the client library's wrapping of it:
    a refused connection or an untrusted certificate, say), with a hint for the latter."""
    cause: BaseException = exc
    while isinstance(cause, urllib3.exceptions.MaxRetryError) and cause.reason is not None:
        cause = cause.reason
    text = str(cause) or type(cause).__name__
    hint = ""
    if "CERTIFICATE_VERIFY_FAILED" in text:
        hint = (
            " — its certificate is not signed by a CA this service trusts: name the CA's "
            "certificate (WTM_S3_CA_FILE; ssl_ca_certs= in a rediss:// URL; tlsCAFile= in "
            "a MongoDB URI)"
        )
    return SystemExit(f"cannot reach {what} ({setting}): {text}{hint}")
