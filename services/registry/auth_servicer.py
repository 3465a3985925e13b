"""``AuthService`` over gRPC: API keys and the audit log (``services.common.auth``)."""

from __future__ import annotations

from typing import Any

import grpc

from common.errors import InvalidArgument
from services.common import auth
from services.common.api_key_store import ApiKeys, KeyRecord
from services.common.audit_log import AuditLog
from services.common.paging import decode_token, encode_token, page_size_of
from wtm.v1 import auth_service_pb2 as pb
from wtm.v1 import auth_service_pb2_grpc as pb_grpc


def _key_to_proto(k: KeyRecord) -> pb.ApiKey:
    m = pb.ApiKey(
        key_id=k.key_id,
        name=k.name,
        role=str(k.role),
        namespace=k.namespace,
        created_by=k.created_by,
    )
    m.create_time.FromMilliseconds(k.created_ms)
    if k.expires_ms:
        m.expire_time.FromMilliseconds(k.expires_ms)
    if k.revoked_ms:
        m.revoke_time.FromMilliseconds(k.revoked_ms)
    return m


def _event_to_proto(e: dict[str, Any]) -> pb.AuditEvent:
    m = pb.AuditEvent(
        service=e.get("service", ""),
        method=e.get("method", ""),
        key_id=e.get("key_id", ""),
        principal=e.get("principal", ""),
        role=e.get("role", ""),
        namespace=e.get("namespace", ""),
        outcome=e.get("outcome", ""),
    )
    m.time.FromMilliseconds(int(e.get("time_ms", 0)))
    return m


class AuthServicer(pb_grpc.AuthServiceServicer):
    """Thin adapter over ``ApiKeys`` and ``AuditLog``; the caller is ``auth.current()``."""

    def __init__(self, keys: ApiKeys, audit: AuditLog) -> None:
        self._keys = keys
        self._audit = audit

    def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: grpc.ServicerContext
    ) -> pb.CreateApiKeyResponse:
        record, secret = self._keys.create(
            request.name,
            request.role,
            request.namespace,
            request.ttl.ToNanoseconds() / 1e9,
            auth.current(),
        )
        return pb.CreateApiKeyResponse(key=_key_to_proto(record), secret=secret)

    def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: grpc.ServicerContext
    ) -> pb.ListApiKeysResponse:
        keys, token = self._keys.page(auth.current(), request.page_size, request.page_token)
        return pb.ListApiKeysResponse(keys=[_key_to_proto(k) for k in keys], next_page_token=token)

    def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: grpc.ServicerContext
    ) -> pb.RevokeApiKeyResponse:
        if not request.key_id:
            raise InvalidArgument("is required", field="key_id")
        return pb.RevokeApiKeyResponse(
            key=_key_to_proto(self._keys.revoke(request.key_id, auth.current()))
        )

    def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: grpc.ServicerContext
    ) -> pb.ListAuditEventsResponse:
        size = page_size_of(request.page_size, 100, 1000)
        before = decode_token(request.page_token, (int,))[0] if request.page_token else 0
        events = self._audit.list(auth.current(), size + 1, before)
        token = encode_token([events[size - 1]["time_ms"]]) if len(events) > size else ""
        return pb.ListAuditEventsResponse(
            events=[_event_to_proto(e) for e in events[:size]], next_page_token=token
        )
