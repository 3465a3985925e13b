"""``Gate``: what a service's interceptor (``grpc_server.py``) asks of each call: who is
calling (their API key, ``api_key_store.py``), in which namespace, and whether their role
may call the method (``auth.METHOD_PERMISSIONS``); it records mutations in the audit log
(``audit_log.py``)."""

from __future__ import annotations

import logging
from typing import Any

from common.errors import PermissionDenied, Unauthenticated
from services.common.api_key_store import ApiKeys
from services.common.audit_log import AuditLog
from services.common.auth import (
    ANONYMOUS,
    METHOD_PERMISSIONS,
    MUTATIONS,
    NAMESPACE_HEADER,
    Principal,
)

log = logging.getLogger(__name__)


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
