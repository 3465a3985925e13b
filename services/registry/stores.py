"""Where the registry keeps things: ``TaskStore`` (MongoDB) and ``PackageStore`` (S3)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import pymongo
from minio import Minio
from minio.error import S3Error
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from services.common.errors import InvalidArgument, NotFound
from services.registry.models import TaskVersion


def encode_token(values: list[Any]) -> str:
    """An opaque page token from the sort key of the last item of a page."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def decode_token(token: str) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as exc:
        raise InvalidArgument("not a token returned by this service", field="page_token") from exc
    if not isinstance(values, list):
        raise InvalidArgument("not a token returned by this service", field="page_token")
    return values


class TaskStore:
    """Task versions in MongoDB: one document per (task_id, version), never changed."""

    def __init__(self, db: pymongo.database.Database) -> None:
        self._tasks: Collection = db["tasks"]

    def ensure_indexes(self) -> None:
        self._tasks.create_index(
            [("task_id", pymongo.ASCENDING), ("version", pymongo.ASCENDING)], unique=True
        )

    def insert(self, task: TaskVersion) -> bool:
        """Insert a version; False when that (task_id, version) already exists."""
        try:
            self._tasks.insert_one(task.to_doc())
        except DuplicateKeyError:
            return False
        return True

    def get(self, task_id: str, version: str) -> TaskVersion | None:
        doc = self._tasks.find_one({"task_id": task_id, "version": version})
        return TaskVersion.from_doc(doc) if doc else None

    def latest(self, task_id: str) -> TaskVersion | None:
        doc = next(
            iter(self._tasks.find({"task_id": task_id}).sort("version_sort", -1).limit(1)), None
        )
        return TaskVersion.from_doc(doc) if doc else None

    def page(
        self, filters: dict[str, Any], after: list[Any] | None, limit: int
    ) -> list[TaskVersion]:
        """Versions matching ``filters``, by task_id then newest first, after a page token."""
        query = dict(filters)
        if after:
            task_id, version_sort = after
            query["$or"] = [
                {"task_id": {"$gt": task_id}},
                {"task_id": task_id, "version_sort": {"$lt": version_sort}},
            ]
        cursor = (
            self._tasks.find(query)
            .sort([("task_id", pymongo.ASCENDING), ("version_sort", pymongo.DESCENDING)])
            .limit(limit)
        )
        return [TaskVersion.from_doc(d) for d in cursor]


class PackageStore:
    """Package archives in an S3 bucket, keyed by their sha256 digest."""

    CHUNK = 1024 * 1024

    def __init__(self, client: Minio, bucket: str) -> None:
        self._s3 = client
        self._bucket = bucket

    def ensure_bucket(self) -> None:
        if not self._s3.bucket_exists(self._bucket):
            try:
                self._s3.make_bucket(self._bucket)
            except S3Error as exc:  # another replica made it first
                if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    @staticmethod
    def key(digest: str) -> str:
        return f"sha256/{digest}.tar.gz"

    def put(self, digest: str, data: bytes) -> None:
        self._s3.put_object(
            self._bucket,
            self.key(digest),
            io.BytesIO(data),
            len(data),
            content_type="application/gzip",
        )

    def stream(self, digest: str) -> Iterator[bytes]:
        """Yield the archive in chunks; NotFound when no such digest is stored."""
        try:
            response = self._s3.get_object(self._bucket, self.key(digest))
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject"}:
                raise NotFound(f"no package with digest {digest}", field="digest") from exc
            raise
        try:
            yield from response.stream(self.CHUNK)
        finally:
            response.close()
            response.release_conn()
