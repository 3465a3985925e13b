"""Clients for the backing services, built from settings. The only place they are created."""

from __future__ import annotations

from urllib.parse import urlparse

import pymongo
import redis.asyncio as aioredis
from minio import Minio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError


def mongo_database(uri: str, database: str) -> pymongo.database.Database:
    """A MongoDB database handle (the connection is made lazily)."""
    client: pymongo.MongoClient = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=5000, tz_aware=True
    )
    return client[database]


def redis_client(url: str, socket_timeout: float = 30) -> aioredis.Redis:
    """An asyncio Redis client. A command that finds its connection closed (Redis restarted,
    or a proxy or the server's idle timeout dropped it) goes again on a fresh connection, up
    to 3 times with jittered backoff: redis-py's ``from_url`` retries nothing unless told,
    and the first call on each dropped pooled connection would fail. Only connection errors
    are retried; a timeout is not (the script may be running)."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3, (RedisConnectionError,)),
        retry_on_error=[RedisConnectionError],
    )


def s3_client(endpoint: str, access_key: str, secret_key: str) -> Minio:
    """An S3 client for ``http(s)://host:port`` or plain ``host:port`` (plain HTTP)."""
    parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    return Minio(
        parsed.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=parsed.scheme == "https",
    )
