"""OTLP's wire form of finished spans, written straight to bytes, and the span exporter that
sends it.

The OTLP exporter builds a protobuf object for every span, attribute, value and event and
then serialises them; on this project's spans (a step span has about fifteen attributes and
four events) that was about two fifths of what tracing every run cost the throughput
(stacks whose exporter only encoded, against stacks whose exporter dropped spans).
``encode_spans`` writes the same ``ExportTraceServiceRequest`` directly in the protobuf wire
format, field by field in field-number order, caching what repeats (attribute keys and
string attributes). ``tests/unit/test_span_encoding.py`` holds it to the exporter's own
encoder, message for message and byte for byte. ``SpanExporter`` is the library's OTLP/gRPC
exporter (batching, retries, TLS, headers, compression) with its requests written here: a
third of the CPU per span.

Field numbers are those of ``opentelemetry/proto/{collector/trace,trace,common,resource}/v1``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

log = logging.getLogger(__name__)

_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_DOUBLE = struct.Struct("<d").pack

# SpanFlags: the parent's is-remote bit is known (always), and set when the parent is remote.
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_KIND = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_BYTE = [bytes((n,)) for n in range(0x80)]


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    n = len(payload)
    return tag + (_BYTE[n] if n < 0x80 else _varint(n)) + payload


def _text(tag: bytes, text: str | None) -> bytes:
    """A string field, left out when empty (proto3)."""
    return _field(tag, text.encode()) if text else b""


def _value(value: Any) -> bytes:
    """An ``AnyValue`` (the message's body, without its own tag)."""
    if type(value) is str:
        return _field(b"\x0a", value.encode())
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"{value} does not fit in an int64")
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64: two's complement
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):  # ArrayValue { repeated AnyValue values = 1 }
        return _field(b"\x2a", b"".join(_field(b"\x0a", _value(v)) for v in value))
    if isinstance(value, Mapping):  # KeyValueList { repeated KeyValue values = 1 }
        return _field(
            b"\x32", b"".join(_field(b"\x0a", _pair(str(k), v)) for k, v in value.items())
        )
    raise TypeError(f"cannot encode {type(value).__name__} {value!r} as an attribute value")


_keys: dict[str, bytes] = {}  # attribute key -> its KeyValue.key field


def _pair(key: str, value: Any) -> bytes:
    """A ``KeyValue``'s body."""
    encoded = _keys.get(key)
    if encoded is None:
        encoded = _field(b"\x0a", key.encode())
        if len(_keys) < 4096:  # keys are a small fixed set; a stray flood is not kept
            _keys[key] = encoded
    return encoded + _field(b"\x12", _value(value))


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Each attribute as a repeated ``KeyValue`` field ``tag``; one that cannot be encoded
    is left out and logged (as the exporter does)."""
    if not attributes:
        return b""
    out = []
    for k, v in attributes.items():
        if type(v) is str:  # most are, and many repeat (state, task, version, executor)
            found = _strings.get((tag, k, v))
            if found is None:
                found = _field(tag, _pair(k, v))
                if len(_strings) >= 8192:
                    _strings.clear()
                _strings[(tag, k, v)] = found
            out.append(found)
            continue
        try:
            out.append(_field(tag, _pair(k, v)))
        except Exception as exc:  # noqa: BLE001 - an attribute must not lose the span
            log.exception("Failed to encode key %s: %s", k, exc)
    return b"".join(out)


_strings: dict[tuple[bytes, str, str], bytes] = {}  # a string attribute -> its field


def _count(tag: bytes, n: int) -> bytes:
    return tag + _varint(n) if n else b""


def _time(tag: bytes, ns: int | None) -> bytes:
    return tag + _FIXED64(ns) if ns else b""


def _span(span: ReadableSpan) -> bytes:
    """A ``Span``'s body."""
    context = span.get_span_context()
    assert context is not None
    parts = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),  # 1 trace_id
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),  # 2 span_id
    ]
    if context.trace_state:  # 3 trace_state
        parts.append(_text(b"\x1a", ",".join(f"{k}={v}" for k, v in context.trace_state.items())))
    parent = span.parent
    if parent:  # 4 parent_span_id
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    parts.append(_text(b"\x2a", span.name))  # 5 name
    parts.append(b"\x30" + _varint(_KIND[span.kind]))  # 6 kind
    parts.append(_time(b"\x39", span.start_time))  # 7 start_time_unix_nano
    parts.append(_time(b"\x41", span.end_time))  # 8 end_time_unix_nano
    parts.append(_attributes(b"\x4a", span.attributes))  # 9 attributes
    parts.append(_count(b"\x50", span.dropped_attributes))  # 10
    for event in span.events:  # 11 events
        parts.append(
            _field(
                b"\x5a",
                _time(b"\x09", event.timestamp)  # Event: 1 time, 2 name, 3 attributes, 4 dropped
                + _text(b"\x12", event.name)
                + _attributes(b"\x1a", event.attributes)
                + _count(b"\x20", event.dropped_attributes),
            )
        )
    parts.append(_count(b"\x60", span.dropped_events))  # 12
    for link in span.links:  # 13 links
        remote = _IS_REMOTE if link.context.is_remote else 0
        parts.append(
            _field(
                b"\x6a",
                b"\x0a\x10"  # Link: 1 trace_id, 2 span_id, 4 attributes, 5 dropped, 6 flags
                + link.context.trace_id.to_bytes(16, "big")
                + b"\x12\x08"
                + link.context.span_id.to_bytes(8, "big")
                + _attributes(b"\x22", link.attributes)
                + _count(b"\x28", link.dropped_attributes)
                + b"\x35"
                + _FIXED32(_HAS_IS_REMOTE | remote),
            )
        )
    parts.append(_count(b"\x70", span.dropped_links))  # 14
    status = span.status
    if status is not None:  # 15 status: 2 message, 3 code
        parts.append(
            _field(
                b"\x7a",
                _text(b"\x12", status.description) + _count(b"\x18", status.status_code.value),
            )
        )
    remote = _IS_REMOTE if parent is not None and parent.is_remote else 0
    parts.append(b"\x85\x01" + _FIXED32(_HAS_IS_REMOTE | remote))  # 16 flags
    return b"".join(parts)


def _resource(resource: Any) -> bytes:
    """A ``ResourceSpans.resource`` field."""
    return _field(b"\x0a", _attributes(b"\x0a", resource.attributes))


def _scope(scope: Any) -> bytes:
    """A ``ScopeSpans.scope`` field (an empty scope when there is none)."""
    if scope is None:
        return b"\x0a\x00"
    return _field(
        b"\x0a",
        _text(b"\x0a", scope.name)
        + _text(b"\x12", scope.version)
        + _attributes(b"\x1a", scope.attributes),
    )


def _canonical(thing: Any, seen: dict[int, Any], distinct: list[Any]) -> Any:
    """The first of the equal objects met (a process has one resource and a few scopes: one
    comparison per new object, not a hash of its attributes per span)."""
    found = seen.get(id(thing))
    if found is None:
        found = next((d for d in distinct if d == thing), None)
        if found is None:
            distinct.append(thing)
            found = thing
        seen[id(thing)] = found
    return found


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """An ``ExportTraceServiceRequest`` holding ``spans``, grouped by resource, then by
    instrumentation scope, in the order they first appear (as the OTLP exporter does)."""
    seen: dict[int, Any] = {}
    resources: list[Any] = []
    scopes: list[Any] = []
    grouped: dict[int, dict[int, list[bytes]]] = {}
    owners: dict[int, Any] = {}
    for span in spans:
        resource = _canonical(span.resource, seen, resources)
        scope = _canonical(span.instrumentation_scope or None, seen, scopes)
        owners[id(resource)], owners[id(scope)] = resource, scope
        by_scope = grouped.setdefault(id(resource), {})
        by_scope.setdefault(id(scope), []).append(_field(b"\x12", _span(span)))  # 2 spans
    out = []
    for resource_id, by_scope in grouped.items():
        resource = owners[resource_id]
        body = [_resource(resource)]
        for scope_id, encoded in by_scope.items():
            scope = owners[scope_id]
            schema = scope.schema_url if scope is not None else ""
            body.append(  # ResourceSpans: 2 scope_spans; ScopeSpans: 1 scope, 2 spans, 3 schema
                _field(b"\x12", _scope(scope) + b"".join(encoded) + _text(b"\x1a", schema))
            )
        body.append(_text(b"\x1a", resource.schema_url))  # ResourceSpans: 3 schema_url
        out.append(_field(b"\x0a", b"".join(body)))  # the request: 1 resource_spans
    return b"".join(out)


class SpanExporter(OTLPSpanExporter):
    """The OTLP/gRPC span exporter, each request written by ``encode_spans``."""

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return ExportTraceServiceRequest.FromString(encode_spans(data))
