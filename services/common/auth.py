"""Who may call what: API keys, roles, the one permission table, and the audit log.

Every call carries a principal: an API key (``authorization: Bearer wtm_<id>.<secret>``)
bound to a namespace and a role. Keys are random, shown once, stored only as a SHA-256 of
their secret (in MongoDB ``api_keys``), revocable, and may expire. ``METHOD_PERMISSIONS``
names the one permission each RPC needs; ``ROLE_PERMISSIONS`` what each role holds. One
interceptor (``services/common/grpc_server.py``) checks them: a method missing from the
table is refused (deny by default). Mutations are written to MongoDB ``audit`` with the
principal, namespace, time and outcome.

Namespaces: tasks, pipelines, runs, artifacts and queues belong to one. A call acts in the
namespace its key is bound to; a key of every namespace (``*``: the bootstrap admin, the
scheduler's service key, a shared fleet's executor key) names one in the ``wtm-namespace``
request header ("default" when absent), or ``*`` to read across all of them. Anything in
another namespace is NOT_FOUND, so its existence is not leaked.

Roles: ``admin`` (everything but the executor stream: keys, audit), ``developer`` (register
and deprecate tasks and pipelines, read), ``operator`` (cancel any run, read everything),
``submitter`` (submit, watch, cancel its own runs, upload artifacts), ``viewer`` (read),
``executor`` (only the executor stream, and the packages and artifacts steps need) and
``service`` (a scheduler calling the registry: read, packages, artifacts).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import hmac
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from tenacity import Retrying, stop_after_delay, wait_exponential

from common.api_keys import PREFIX, new_key
from common.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from services.common.paging import page_of, page_size_of

log = logging.getLogger(__name__)


class Role(StrEnum):
    ADMIN = "admin"
    DEVELOPER = "developer"
    OPERATOR = "operator"
    SUBMITTER = "submitter"
    VIEWER = "viewer"
    EXECUTOR = "executor"
    SERVICE = "service"


class Permission(StrEnum):
    READ = "read"  # runs, tasks, pipelines, executors
    READ_PACKAGES = "read_packages"  # task code
    READ_ARTIFACTS = "read_artifacts"
    WRITE_ARTIFACTS = "write_artifacts"
    DELETE_ARTIFACTS = "delete_artifacts"  # admins, and the schedulers' artifact sweep
    WRITE_CATALOG = "write_catalog"  # register and deprecate tasks and pipelines
    SUBMIT = "submit"
    CANCEL = "cancel"  # own runs; CANCEL_ANY for anyone's
    CANCEL_ANY = "cancel_any"
    MANAGE_KEYS = "manage_keys"
    READ_AUDIT = "read_audit"
    SHARE_TASKS = "share_tasks"  # let every namespace use a task of one's own
    MANAGE_NAMESPACES = "manage_namespaces"  # limits, weights, retention (every-namespace keys)
    EXECUTOR_STREAM = "executor_stream"


P = Permission
_READER = {P.READ, P.READ_ARTIFACTS}
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset(_READER),
    Role.SUBMITTER: frozenset({*_READER, P.SUBMIT, P.CANCEL, P.WRITE_ARTIFACTS}),
    Role.DEVELOPER: frozenset({*_READER, P.READ_PACKAGES, P.WRITE_CATALOG}),
    Role.OPERATOR: frozenset({*_READER, P.READ_PACKAGES, P.CANCEL, P.CANCEL_ANY}),
    Role.ADMIN: frozenset(set(Permission) - {P.EXECUTOR_STREAM}),
    Role.EXECUTOR: frozenset(
        {P.EXECUTOR_STREAM, P.READ_PACKAGES, P.READ_ARTIFACTS, P.WRITE_ARTIFACTS}
    ),
    Role.SERVICE: frozenset(
        {P.READ, P.READ_PACKAGES, P.READ_ARTIFACTS, P.WRITE_ARTIFACTS, P.DELETE_ARTIFACTS}
    ),
}

_R, _S = "/wtm.v1.RegistryService/", "/wtm.v1.SchedulerService/"
_SCH = "/wtm.v1.ScheduleService/"
# The one table: every RPC and the permission it needs. Not listed: refused.
METHOD_PERMISSIONS: dict[str, Permission] = {
    _R + "UploadTaskPackage": P.WRITE_CATALOG,
    _R + "GetTask": P.READ,
    _R + "ListTasks": P.READ,
    _R + "DownloadTaskPackage": P.READ_PACKAGES,
    _R + "DeprecateTask": P.WRITE_CATALOG,
    _R + "ShareTask": P.SHARE_TASKS,
    _R + "RegisterPipelines": P.WRITE_CATALOG,
    _R + "GetPipeline": P.READ,
    _R + "ListPipelines": P.READ,
    _R + "UploadArtifact": P.WRITE_ARTIFACTS,
    _R + "DownloadArtifact": P.READ_ARTIFACTS,
    _R + "ListArtifacts": P.READ_ARTIFACTS,
    _R + "DeleteArtifacts": P.DELETE_ARTIFACTS,
    _R + "CheckDependencies": P.READ,
    _S + "SubmitRun": P.SUBMIT,
    _S + "SubmitRuns": P.SUBMIT,
    _S + "GetRun": P.READ,
    _S + "WatchRun": P.READ,
    _S + "CancelRun": P.CANCEL,
    _S + "CancelRuns": P.CANCEL,  # another key's runs: CANCEL_ANY, checked per run
    _S + "ResumeRuns": P.SUBMIT,  # each resume is a submit (as GetRun, then SubmitRun)
    _S + "RerunRun": P.SUBMIT,  # a submit, of a run the caller can read
    _S + "ListRuns": P.READ,
    _S + "ListExecutors": P.READ,
    _S + "ListQueues": P.READ,
    _S + "ListNamespaces": P.READ,
    _S + "UpdateNamespace": P.MANAGE_NAMESPACES,
    # Holding a queue or an executor back holds back anyone's runs, as cancelling does.
    _S + "PauseQueue": P.CANCEL_ANY,
    _S + "ResumeQueue": P.CANCEL_ANY,
    _S + "SetTaskLimits": P.CANCEL_ANY,
    _S + "ListTaskLimits": P.READ,
    _S + "PauseExecutor": P.CANCEL_ANY,
    _S + "ResumeExecutor": P.CANCEL_ANY,
    _S + "CheckDependencies": P.READ,
    # Schedules: creating and resuming one submits runs; pausing and deleting stop them, as
    # cancelling does (another key's schedule: CANCEL_ANY, checked by the domain).
    _SCH + "CreateSchedule": P.SUBMIT,
    _SCH + "GetSchedule": P.READ,
    _SCH + "ListSchedules": P.READ,
    _SCH + "PauseSchedule": P.CANCEL,
    _SCH + "ResumeSchedule": P.SUBMIT,
    _SCH + "DeleteSchedule": P.CANCEL,
    _SCH + "CancelBackfill": P.CANCEL,
    _SCH + "TriggerSchedule": P.SUBMIT,
    _SCH + "BackfillSchedule": P.SUBMIT,
    "/wtm.v1.ExecutorService/Connect": P.EXECUTOR_STREAM,
    "/wtm.v1.AuthService/CreateApiKey": P.MANAGE_KEYS,
    "/wtm.v1.AuthService/ListApiKeys": P.MANAGE_KEYS,
    "/wtm.v1.AuthService/RevokeApiKey": P.MANAGE_KEYS,
    "/wtm.v1.AuthService/ListAuditEvents": P.READ_AUDIT,
}
# Calls that change something: each is written to the audit log.
MUTATIONS = {
    m
    for m, p in METHOD_PERMISSIONS.items()
    if p
    in {
        P.WRITE_CATALOG,
        P.SUBMIT,
        P.CANCEL,
        P.CANCEL_ANY,
        P.MANAGE_KEYS,
        P.WRITE_ARTIFACTS,
        P.DELETE_ARTIFACTS,
        P.SHARE_TASKS,
        P.MANAGE_NAMESPACES,
    }
    and not m.endswith(("/ListApiKeys",))
}
ALL_NAMESPACES = "*"
DEFAULT_NAMESPACE = "default"
NAMESPACE_HEADER = "wtm-namespace"
_NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # a DNS label, as Kubernetes


def check_namespace(name: str, field: str = "namespace", allow_all: bool = False) -> str:
    """``name`` when it is a namespace name (or ``*`` with ``allow_all``)."""
    if allow_all and name == ALL_NAMESPACES:
        return name
    if not _NAMESPACE.match(name):
        raise InvalidArgument(
            f"{name[:70]!r} is not a namespace name: 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
            field=field,
        )
    return name


def one_namespace(namespace: str) -> str:
    """``namespace`` when it names one: writes and lookups by name need one, not ``*``."""
    if namespace == ALL_NAMESPACES:
        raise InvalidArgument(
            f"this call needs one namespace; set the {NAMESPACE_HEADER} header (wtm -n NAME)",
            field=NAMESPACE_HEADER,
        )
    return namespace


def visible(namespace: str, scope: str) -> bool:
    """Whether a thing in ``namespace`` is visible to a call acting in ``scope``."""
    return scope in (ALL_NAMESPACES, namespace)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's id, name, role and namespace (the key's binding, ``*`` for
    every namespace), and ``scope``, the namespace this call acts in."""

    key_id: str
    name: str
    role: Role
    namespace: str
    scope: str = DEFAULT_NAMESPACE

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def acting_in(self, requested: str) -> Principal:
        """This principal acting in the namespace a call's header asked for ("" for none):
        a key bound to one namespace acts only in it."""
        if self.namespace != ALL_NAMESPACES:
            if requested and requested != self.namespace:
                raise PermissionDenied(
                    f"key {self.key_id} is bound to namespace {self.namespace!r}",
                    field=NAMESPACE_HEADER,
                )
            return dataclasses.replace(self, scope=self.namespace)
        scope = check_namespace(requested, NAMESPACE_HEADER, True) if requested else ""
        return dataclasses.replace(self, scope=scope or DEFAULT_NAMESPACE)

    def __repr__(self) -> str:  # never the secret (a principal holds none anyway)
        return f"Principal({self.key_id}, {self.role}, {self.namespace}, in {self.scope})"


ANONYMOUS = Principal("", "anonymous (auth off)", Role.ADMIN, ALL_NAMESPACES)
_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal", default=ANONYMOUS)


def current() -> Principal:
    """The principal of the call being served (ANONYMOUS when auth is off)."""
    return _current.get()


def set_current(principal: Principal) -> contextvars.Token[Principal]:
    return _current.set(principal)


def reset_current(token: contextvars.Token[Principal]) -> None:
    _current.reset(token)


def check_own(owner: str, what: str, field: str) -> None:
    """A caller whose role may not cancel anyone's runs acts only on what its own key made
    (``owner``: that key's id): PERMISSION_DENIED naming ``field`` otherwise."""
    caller = current()
    if not caller.may(Permission.CANCEL_ANY) and owner != caller.key_id:
        raise PermissionDenied(
            f"{what} was made by another key; role {caller.role} may change only its own",
            field=field,
        )


def scope() -> str:
    """The namespace the call being served acts in (``*``: every namespace, reads only)."""
    return _current.get().scope


# Keys ------------------------------------------------------------------------------------


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


# The gate ---------------------------------------------------------------------------------


def open_gate(enabled: bool, db: Any, cache_seconds: float = 5.0, audit_days: float = 0.0) -> Gate:
    """The gate a service's interceptor asks: keys and audit in ``db`` (a pymongo database;
    audit events kept ``audit_days``, 0: for good), or, with auth off, one that lets every
    call in as ANONYMOUS."""
    if not enabled:
        log.warning("auth is OFF (WTM_AUTH=false): every caller may do anything")
        return Gate(None)
    return Gate(ApiKeys(db, cache_seconds), AuditLog(db, audit_days))


PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class Gate:
    """What the interceptor asks: who is calling, and may they call this method."""

    def __init__(self, keys: ApiKeys | None, audit: AuditLog | None = None) -> None:
        self.keys = keys  # None: auth is off (every call is ANONYMOUS)
        self.audit = audit

    def close(self) -> None:
        """Write the audit events still queued (a service's graceful stop)."""
        if self.audit is not None:
            self.audit.close()

    def admit(self, method: str, metadata: Any, allow_io: bool = True) -> Principal:
        """The caller, acting in the namespace it asked for; refused when it may not call
        ``method`` or act there."""
        if method.startswith(PUBLIC_PREFIXES):
            return ANONYMOUS
        headers = [(k, v) for k, v in metadata or () if isinstance(v, str)]
        requested = next((v for k, v in headers if k == NAMESPACE_HEADER), "")
        if self.keys is None:
            return ANONYMOUS.acting_in(requested)
        bearer = next((v for k, v in headers if k == "authorization"), None)
        if not bearer:
            raise Unauthenticated("authorization: missing; send 'authorization: Bearer <API key>'")
        principal = self.keys.verify(bearer.removeprefix("Bearer ").strip(), allow_io)
        principal = principal.acting_in(requested)
        needed = METHOD_PERMISSIONS.get(method)
        if needed is None:
            raise PermissionDenied(f"{method} is not in the permission table")
        if not principal.may(needed):
            self.record(method, principal, "PERMISSION_DENIED")
            raise PermissionDenied(
                f"role {principal.role} may not {needed.value.replace('_', ' ')} ({method})"
            )
        return principal

    def record(self, method: str, principal: Principal, outcome: str) -> None:
        if self.audit is not None and method in MUTATIONS:
            self.audit.record(method, principal, outcome)


AUDIT_LINGER_SECONDS = 0.2
AUDIT_PRUNE_EVERY_SECONDS = 3600.0
DAY_MS = 86_400_000


class AuditLog:
    """Mutations, written to MongoDB ``audit`` by a thread of its own (never on the call's
    path), with the principal, namespace, time and outcome (a gRPC status name). Events
    older than ``keep_days`` (WTM_AUDIT_RETENTION_DAYS; 0: for good) are deleted by the same
    thread, a minute after start and then hourly: every submit is a mutation, so the log
    grows with the work, as the run history does."""

    def __init__(self, db: Any, keep_days: float = 0.0) -> None:
        self._events = db["audit"]
        self.keep_days = keep_days
        # Called on the thread before each write: a service whose MongoDB has moments to
        # avoid blocks in it until a good one (the scheduler: as a new run's insert lands).
        self.write_when: Callable[[], object] = lambda: None
        self._prune_at = time.monotonic() + 60.0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=100_000)
        self._thread = threading.Thread(target=self._write, name="wtm-audit", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop (a service's graceful stop: the thread is a
        daemon, and events still lingering when the process exits were lost with it)."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    def prune(self) -> int:
        """Delete the events past the retention; how many went."""
        if not self.keep_days:
            return 0
        cutoff = _ms() - int(self.keep_days * DAY_MS)
        return int(self._events.delete_many({"time_ms": {"$lt": cutoff}}).deleted_count)

    def record(self, method: str, principal: Principal, outcome: str) -> None:
        event = {
            "time_ms": _ms(),
            "method": method.rsplit("/", 1)[-1],
            "service": method.strip("/").split("/")[0],
            "key_id": principal.key_id,
            "principal": principal.name,
            "role": str(principal.role),
            "namespace": principal.scope,
            "outcome": outcome,
        }
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.error("audit queue full; dropped %s", event)

    def _write(self) -> None:
        while True:
            if self.keep_days and time.monotonic() >= self._prune_at:
                self._prune_at = time.monotonic() + AUDIT_PRUNE_EVERY_SECONDS
                try:
                    self.prune()
                except Exception:  # noqa: BLE001 - the thread must go on; next hour again
                    log.exception("pruning the audit log failed")
            try:
                first = self._queue.get(timeout=60.0)
            except queue.Empty:
                continue
            if first is None:  # closed
                return
            batch, closed = [first], False
            # Gather what else comes within the linger: one insert per batch, not per call
            # (a lone insert per submit cost the scheduler ~15% of its time, and nx-27017
            # more; an audit record may well land a fifth of a second after its call).
            time.sleep(AUDIT_LINGER_SECONDS)
            while not self._queue.empty() and len(batch) < 500:
                event = self._queue.get_nowait()
                if event is None:
                    closed = True
                    break
                batch.append(event)
            try:  # MongoDB away: wait and try again, for up to a minute
                for attempt in Retrying(
                    stop=stop_after_delay(60), wait=wait_exponential(max=10), reraise=True
                ):
                    with attempt:
                        self.write_when()
                        self._events.insert_many(batch, ordered=False)
            except Exception:  # noqa: BLE001 - the thread must go on
                log.exception("dropped %d audit events: MongoDB refused them", len(batch))
            if closed:
                return

    def list(self, by: Principal, limit: int, before_ms: int = 0) -> list[dict[str, Any]]:
        query: dict[str, Any] = {} if by.scope == ALL_NAMESPACES else {"namespace": by.scope}
        if before_ms:
            query["time_ms"] = {"$lt": before_ms}
        cursor = self._events.find(query, {"_id": 0}).sort("time_ms", -1).limit(limit)
        return list(cursor)
