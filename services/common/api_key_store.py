"""``ApiKeys``: the API keys in MongoDB ``api_keys``, and verifying a presented key.

A key is ``wtm_<id>.<secret>``: random, shown once, stored only as the SHA-256 of its secret,
revocable, and it may expire. A verified key is cached for seconds, so a revocation takes
effect everywhere within ``cache_seconds``."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from common.api_keys import PREFIX, new_key
from common.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from services.common.auth import ALL_NAMESPACES, Principal, Role, check_namespace
from services.common.paging import page_of, page_size_of

log = logging.getLogger(__name__)


def split_key(text: str) -> tuple[str, str]:
    """(key id, secret) of a key's text; Unauthenticated when it is not one."""
    body = text.removeprefix(PREFIX)
    key_id, _, secret = body.partition(".")
    if not text.startswith(PREFIX) or len(key_id) != 16 or not secret:
        raise Unauthenticated("authorization: not an API key (wtm_<id>.<secret>)")
    return key_id, secret


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _ms(t: datetime | None = None) -> int:
    return int((t or datetime.now(UTC)).timestamp() * 1000)


@dataclass
class KeyRecord:
    """A key as stored: never its secret, only the secret's SHA-256."""

    key_id: str
    name: str
    role: Role
    namespace: str
    created_ms: int
    expires_ms: int = 0  # 0: never
    revoked_ms: int = 0  # 0: not revoked
    created_by: str = ""
    secret_sha256: str = field(default="", repr=False)

    def to_doc(self) -> dict[str, Any]:
        return {"_id": self.key_id, **{k: v for k, v in self.__dict__.items() if k != "key_id"}}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> KeyRecord:
        fields = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc and k != "key_id"}
        return cls(key_id=doc["_id"], **{**fields, "role": Role(fields["role"])})

    def problem(self, now_ms: int) -> str:
        if self.revoked_ms:
            return "revoked"
        if self.expires_ms and now_ms >= self.expires_ms:
            return "expired"
        return ""


class NeedsLookup(Exception):
    """The key is not in the cache: verifying it needs a MongoDB read."""


class ApiKeys:
    """Keys in MongoDB ``api_keys``, and verifying a presented key (cached briefly, so a
    revocation takes effect within ``cache_seconds``)."""

    def __init__(self, db: Any, cache_seconds: float = 5.0) -> None:
        self._keys = db["api_keys"]
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._lock = threading.Lock()

    def create(
        self,
        name: str,
        role: str,
        namespace: str,
        ttl_seconds: float,
        by: Principal,
        key_text: str = "",
    ) -> tuple[KeyRecord, str]:
        """A new key (or the given ``key_text``, for a bootstrap key); returns the record
        and the key's text, which is not stored and cannot be shown again."""
        try:
            role_ = Role(role)
        except ValueError as exc:
            roles = ", ".join(r.value for r in Role)
            raise InvalidArgument(f"must be one of {roles}", field="role") from exc
        if not namespace or (namespace == ALL_NAMESPACES and by.namespace != ALL_NAMESPACES):
            raise InvalidArgument("a namespace name is required", field="namespace")
        check_namespace(namespace, allow_all=True)
        if by.namespace not in (ALL_NAMESPACES, namespace):
            raise PermissionDenied(
                f"an admin of {by.namespace!r} may only create keys in it", field="namespace"
            )
        if ttl_seconds < 0:
            raise InvalidArgument("must not be negative", field="ttl")
        key_id, text = split_key(key_text) if key_text else (None, None)
        if key_id is None or text is None:
            key_id, key_text = new_key()
            _, text = split_key(key_text)
        now = _ms()
        record = KeyRecord(
            key_id,
            name[:200],
            role_,
            namespace,
            now,
            now + int(ttl_seconds * 1000) if ttl_seconds else 0,
            0,
            by.key_id or by.name,
            digest(text),
        )
        self._keys.replace_one({"_id": key_id}, record.to_doc(), upsert=True)
        return record, key_text

    def list(self, by: Principal) -> list[KeyRecord]:
        """The keys of the namespace the call acts in (every key for ``*``)."""
        query = {} if by.scope == ALL_NAMESPACES else {"namespace": by.scope}
        return [KeyRecord.from_doc(d) for d in self._keys.find(query).sort("created_ms", 1)]

    def page(
        self, by: Principal, page_size: int, page_token: str
    ) -> tuple[Sequence[KeyRecord], str]:
        """A page of ``list`` (default 100 keys, at most 1000), and the next page's token."""
        size = page_size_of(page_size, 100, 1000)
        keys = self.list(by)
        return page_of(keys, lambda k: [k.created_ms, k.key_id], (int, str), size, page_token)

    def revoke(self, key_id: str, by: Principal) -> KeyRecord:
        doc = self._keys.find_one({"_id": key_id})
        if doc is None or by.scope not in (ALL_NAMESPACES, doc["namespace"]):
            raise NotFound(f"no key {key_id}", field="key_id")
        if not doc.get("revoked_ms"):
            self._keys.update_one({"_id": key_id}, {"$set": {"revoked_ms": _ms()}})
        with self._lock:
            self._cache.pop(key_id, None)
        return KeyRecord.from_doc(self._keys.find_one({"_id": key_id}))

    def count(self) -> int:
        return int(self._keys.count_documents({}))

    def stored(self, key_id: str, allow_io: bool = True) -> KeyRecord | None:
        """The key ``key_id`` as stored (None: no such key), read again from MongoDB once
        the cached copy is ``cache_seconds`` old; without ``allow_io``, ``NeedsLookup``
        where it would have to be."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is None or now - cached[0] > self.cache_seconds:
            if not allow_io:
                raise NeedsLookup
            doc = self._keys.find_one({"_id": key_id})
            cached = (now, KeyRecord.from_doc(doc) if doc else None)
            with self._lock:
                self._cache[key_id] = cached
        return cached[1]

    def verify(self, key_text: str, allow_io: bool = True) -> Principal:
        """The principal of a presented key; Unauthenticated when it is unknown, wrong,
        revoked or expired (the message says which, but never echoes the key). Without
        ``allow_io``, raises ``NeedsLookup`` where it would have to ask MongoDB."""
        key_id, secret = split_key(key_text)
        record = self.stored(key_id, allow_io)
        if record is None or not hmac.compare_digest(record.secret_sha256, digest(secret)):
            raise Unauthenticated("authorization: unknown API key")
        problem = record.problem(_ms())
        if problem:
            raise Unauthenticated(f"authorization: API key {key_id} is {problem}")
        return Principal(record.key_id, record.name, record.role, record.namespace)
