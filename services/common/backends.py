"""Clients for the backing services, built from settings. The only place they are created."""

from __future__ import annotations

from urllib.parse import urlparse

import pymongo
from minio import Minio


def mongo_database(uri: str, database: str) -> pymongo.database.Database:
    """A MongoDB database handle (the connection is made lazily)."""
    client: pymongo.MongoClient = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=5000, tz_aware=True
    )
    return client[database]


def s3_client(endpoint: str, access_key: str, secret_key: str) -> Minio:
    """An S3 client for ``http(s)://host:port`` or plain ``host:port`` (plain HTTP)."""
    parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    return Minio(
        parsed.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=parsed.scheme == "https",
    )
