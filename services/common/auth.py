"""Who may call what: roles, the one permission table, namespaces, and the principal of the
call being served.

Every call carries a principal: an API key (``authorization: Bearer wtm_<id>.<secret>``)
bound to a namespace and a role. Keys are random, shown once, stored only as a SHA-256 of
their secret (in MongoDB ``api_keys``: ``api_key_store.py``), revocable, and may expire.
``METHOD_PERMISSIONS`` names the one permission each RPC needs; ``ROLE_PERMISSIONS`` what each
role holds. One interceptor (``services/common/grpc_server.py``) asks the ``Gate``
(``gate.py``): a method missing from the table is refused (deny by default). Mutations are
written to MongoDB ``audit`` with the principal, namespace, time and outcome
(``audit_log.py``).

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

import contextvars
import dataclasses
import logging
import re
from dataclasses import dataclass
from enum import StrEnum

from common.errors import InvalidArgument, PermissionDenied

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
    _S + "SignalRun": P.SUBMIT,  # a run of the caller's namespace goes on: a submit's right
    _S + "SignalRuns": P.SUBMIT,  # each run as SignalRun
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
