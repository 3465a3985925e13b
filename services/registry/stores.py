"""Where the registry keeps things: ``TaskStore`` and ``PipelineStore`` (MongoDB, one document
per immutable version) and ``PackageStore`` (S3, archives by digest)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pymongo
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from common.errors import NotFound
from services.common.auth import ALL_NAMESPACES, DEFAULT_NAMESPACE
from services.common.paging import decode_token, encode_token
from services.registry.manifest import version_sort_key
from services.registry.models import PipelineVersion, TaskVersion

T = TypeVar("T")


class VersionedStore(Generic[T]):
    """Immutable versions of named things: one document per (namespace, id, version).

    Documents carry ``version_sort``, a string that sorts semantic versions, so "latest" and
    "newest first" are plain index sorts.
    """

    def __init__(
        self,
        collection: Collection,
        id_field: str,
        to_doc: Callable[[T], dict[str, Any]],
        from_doc: Callable[[dict[str, Any]], T],
    ) -> None:
        self._c = collection
        self._id = id_field
        self._to_doc = to_doc
        self._from_doc = from_doc

    def ping(self) -> str:
        """Raises unless MongoDB answers."""
        self._c.database.command("ping")
        return "answered ping"

    def ensure_indexes(self) -> None:
        self._adopt_unnamespaced()
        self._c.create_index(
            [
                ("namespace", pymongo.ASCENDING),
                (self._id, pymongo.ASCENDING),
                ("version", pymongo.ASCENDING),
            ],
            unique=True,
        )
        self._resort()

    def _adopt_unnamespaced(self) -> None:
        """Versions stored before namespaces existed belong to "default"; the old unique
        index on (id, version) alone would refuse the same task in two namespaces."""
        for doc in self._c.find({}, {"namespace": 1}):
            if "namespace" not in doc:
                self._c.update_one({"_id": doc["_id"]}, {"$set": {"namespace": DEFAULT_NAMESPACE}})
        for name, info in self._c.index_information().items():
            if list(info["key"]) == [(self._id, 1), ("version", 1)]:
                self._c.drop_index(name)

    def _resort(self) -> None:
        """Bring ``version_sort`` up to date where an older release wrote it another way
        (before it followed semver precedence exactly)."""
        for doc in self._c.find({}, {"version": 1, "version_sort": 1}):
            key = version_sort_key(doc["version"])
            if doc.get("version_sort") != key:
                self._c.update_one({"_id": doc["_id"]}, {"$set": {"version_sort": key}})

    def insert(self, item: T) -> bool:
        """Insert a version; False when that (namespace, id, version) already exists."""
        try:
            self._c.insert_one(self._to_doc(item))
        except DuplicateKeyError:
            return False
        return True

    def get(self, namespace: str, ident: str, version: str) -> T | None:
        doc = self._c.find_one({"namespace": namespace, self._id: ident, "version": version})
        return self._from_doc(doc) if doc else None

    def missing_version(self, namespace: str, ident: str, version: str, kind: str) -> None:
        """Raises NOT_FOUND on ``version`` when ``ident`` has versions but not that one (a
        look-up of it found nothing), naming its latest: not "no such task", which it is not."""
        other = self.latest(namespace, ident)
        if other is not None:
            raise NotFound(
                f"{kind} {ident} has no version {version!r}; its latest is {other.version}",  # type: ignore[attr-defined]
                field="version",
            )

    def latest(self, namespace: str, ident: str, extra: dict[str, Any] | None = None) -> T | None:
        query = {"namespace": namespace, self._id: ident, **(extra or {})}
        cursor = self._c.find(query).sort("version_sort", pymongo.DESCENDING).limit(1)
        doc = next(iter(cursor), None)
        return self._from_doc(doc) if doc else None

    def find_one(self, query: dict[str, Any]) -> T | None:
        doc = self._c.find_one(query)
        return self._from_doc(doc) if doc else None

    def find(self, query: dict[str, Any], limit: int) -> list[T]:
        return [self._from_doc(d) for d in self._c.find(query).limit(limit)]

    def set_fields(
        self, namespace: str, ident: str, version: str, fields: dict[str, Any]
    ) -> T | None:
        doc = self._c.find_one_and_update(
            {"namespace": namespace, self._id: ident, "version": version},
            {"$set": fields},
            return_document=pymongo.ReturnDocument.AFTER,
        )
        return self._from_doc(doc) if doc else None

    def page(
        self, namespace: str, filters: dict[str, Any], token: str, size: int
    ) -> tuple[list[T], str]:
        """One page of a namespace's versions by id then newest version first, and the next
        page's token."""
        query = {"namespace": namespace, **filters}
        if token:
            ident, version_sort = decode_token(token, (str, str))
            query["$or"] = [
                {self._id: {"$gt": ident}},
                {self._id: ident, "version_sort": {"$lt": version_sort}},
            ]
        cursor = (
            self._c.find(query)
            .sort([(self._id, pymongo.ASCENDING), ("version_sort", pymongo.DESCENDING)])
            .limit(size + 1)
        )
        docs = list(cursor)
        if len(docs) <= size:
            return [self._from_doc(d) for d in docs], ""
        last = docs[size - 1]
        next_token = encode_token([last[self._id], last["version_sort"]])
        return [self._from_doc(d) for d in docs[:size]], next_token


class TaskStore(VersionedStore[TaskVersion]):
    """Task versions in MongoDB ``tasks``."""

    def __init__(self, db: pymongo.database.Database) -> None:
        super().__init__(db["tasks"], "task_id", TaskVersion.to_doc, TaskVersion.from_doc)


class PipelineStore(VersionedStore[PipelineVersion]):
    """Pipeline versions in MongoDB ``pipelines``."""

    def __init__(self, db: pymongo.database.Database) -> None:
        super().__init__(
            db["pipelines"], "pipeline_id", PipelineVersion.to_doc, PipelineVersion.from_doc
        )


class SharedTasks:
    """Tasks an admin shared with every namespace, in MongoDB ``shared_tasks`` (one document
    per task, all its versions): ``_id`` is "namespace/task_id"."""

    def __init__(self, db: pymongo.database.Database) -> None:
        self._c = db["shared_tasks"]

    def set(self, namespace: str, task_id: str, shared: bool, by: str) -> None:
        key = f"{namespace}/{task_id}"
        if shared:
            doc = {"_id": key, "namespace": namespace, "task_id": task_id, "shared_by": by}
            self._c.replace_one({"_id": key}, doc, upsert=True)
        else:
            self._c.delete_one({"_id": key})

    def is_shared(self, namespace: str, task_id: str) -> bool:
        return self._c.find_one({"_id": f"{namespace}/{task_id}"}, {"_id": 1}) is not None


class BlobStore:
    """Immutable blobs in an S3 bucket, keyed by their sha256 digest."""

    CHUNK = 1024 * 1024
    SUFFIX = ""
    CONTENT_TYPE = "application/octet-stream"
    WHAT = "blob"

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

    def ping(self) -> str:
        """Raises unless the object store answers and the bucket is there."""
        if not self._s3.bucket_exists(self._bucket):
            raise NotFound(f"bucket {self._bucket!r} is missing", field="bucket")
        return f"bucket {self._bucket} is there"

    def key(self, digest: str, namespace: str = DEFAULT_NAMESPACE) -> str:
        return f"sha256/{digest}{self.SUFFIX}"

    def put(self, digest: str, data: bytes, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._s3.put_object(
            self._bucket,
            self.key(digest, namespace),
            io.BytesIO(data),
            len(data),
            content_type=self.CONTENT_TYPE,
        )

    def stream(self, digest: str, namespace: str = DEFAULT_NAMESPACE) -> Iterator[bytes]:
        """Yield the blob in chunks; NotFound when no such digest is stored."""
        try:
            response = self._s3.get_object(self._bucket, self.key(digest, namespace))
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject"}:
                raise NotFound(f"no {self.WHAT} with digest {digest}", field="digest") from exc
            raise
        try:
            yield from response.stream(self.CHUNK)
        finally:
            response.close()
            response.release_conn()


class PackageStore(BlobStore):
    """Task package archives (tar.gz) by digest."""

    SUFFIX = ".tar.gz"
    CONTENT_TYPE = "application/gzip"
    WHAT = "package"


@dataclass(frozen=True)
class StoredArtifactObject:
    """An artifact as the object store lists it."""

    namespace: str
    digest: str
    size_bytes: int
    stored_ms: int  # when it was last written


class ArtifactStore(BlobStore):
    """Uploaded files (run inputs such as images) by namespace and digest: the same bytes
    uploaded in two namespaces are two objects, so an artifact URI is found only in the
    namespace it was uploaded in. The "default" namespace keeps the plain keys it had
    before namespaces existed."""

    WHAT = "artifact"

    def key(self, digest: str, namespace: str = DEFAULT_NAMESPACE) -> str:
        plain = super().key(digest)
        return plain if namespace == DEFAULT_NAMESPACE else f"ns/{namespace}/{plain}"

    def page(
        self, namespace: str, after_key: str, limit: int
    ) -> tuple[list[StoredArtifactObject], str]:
        """Up to ``limit`` artifacts of ``namespace`` (``*``: every namespace's) in key
        order after ``after_key``, and the key of the last when more follow ("" when not)."""
        prefix = "" if namespace == ALL_NAMESPACES else self.key("", namespace)
        found: list[tuple[str, StoredArtifactObject]] = []
        listing = self._s3.list_objects(
            self._bucket, prefix=prefix, recursive=True, start_after=after_key or None
        )
        for obj in listing:
            parsed = _artifact_key(obj.object_name or "")
            if parsed is None:
                continue
            stored = obj.last_modified.timestamp() if obj.last_modified else 0.0
            entry = StoredArtifactObject(*parsed, int(obj.size or 0), int(stored * 1000))
            found.append((obj.object_name or "", entry))
            if len(found) > limit:
                break
        more = len(found) > limit
        return [e for _, e in found[:limit]], found[limit - 1][0] if more else ""

    def delete(self, namespace: str, digests: list[str]) -> None:
        """Remove these artifacts of ``namespace``; one not stored is no error."""
        doomed = [DeleteObject(self.key(d, namespace)) for d in digests]
        errors = list(self._s3.remove_objects(self._bucket, doomed))  # lazy: read them all
        if errors:
            raise RuntimeError(f"the object store kept {len(errors)}: {errors[0]}")


_ARTIFACT_KEY = re.compile(r"^(?:ns/([a-z0-9-]{1,63})/)?sha256/([0-9a-f]{64})$")


def _artifact_key(key: str) -> tuple[str, str] | None:
    """(namespace, digest) of an artifact's object key; None for any other object."""
    m = _ARTIFACT_KEY.match(key)
    return (m.group(1) or DEFAULT_NAMESPACE, m.group(2)) if m else None
