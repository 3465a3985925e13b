"""``common.span_encoding`` writes what the OTLP exporter's own encoder writes: spans made by
the real SDK (every attribute type, events, links, statuses, kinds, remote and local parents,
several scopes and resources) are encoded both ways and compared as messages and as
canonical bytes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as library
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from common.span_encoding import SpanExporter, encode_spans

REMOTE = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1))
LOCAL = SpanContext(
    0xABCDEF0123456789ABCDEF0123456789,
    0x1122334455667788,
    is_remote=False,
    trace_flags=TraceFlags(1),
)


def spans_of(resource: Resource) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    step = provider.get_tracer("wtm.scheduler", "1.2.3", schema_url="https://schema/1")
    other = provider.get_tracer("wtm.executor")
    remote_parent = trace.set_span_in_context(trace.NonRecordingSpan(REMOTE))
    with step.start_as_current_span(
        "run noop",
        kind=SpanKind.SERVER,
        context=remote_parent,
        attributes={
            "wtm.run_id": "0193a1b2c3d4e5f6a7b8c9d0e1f2a3b4",
            "wtm.attempt": 3,
            "negative": -7,
            "big": 2**62,
            "ratio": 0.25,
            "ok": True,
            "off": False,
            "wtm.lineage": ["a -> b", "b -> c"],
            "counts": [1, 2, 3],
            "flags": [True, False],
            "weights": [0.5, 1.5],
            "empty": "",
            "ünïcode": "naïve ☃",
        },
    ) as span:
        span.add_event("dispatched", {"wtm.executor_id": "executor-1"}, timestamp=1_000)
        span.add_event("process() called", timestamp=2_000)
        span.add_event("bare")
        with other.start_as_current_span(
            "execute noop",
            kind=SpanKind.CLIENT,
            links=[Link(LOCAL, {"why": "read"}), Link(REMOTE)],
        ) as child:
            child.set_status(Status(StatusCode.ERROR, "process() raised ValueError: ünï"))
        for kind in (SpanKind.INTERNAL, SpanKind.PRODUCER, SpanKind.CONSUMER):
            other.start_span(f"k {kind.name}", kind=kind).end()
        span.set_status(Status(StatusCode.OK))
    traced_state = SpanContext(
        LOCAL.trace_id,
        0x99,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("k", "v")]),
    )
    other.start_span(
        "with state", context=trace.set_span_in_context(trace.NonRecordingSpan(traced_state))
    ).end()
    step.start_span("no parent", start_time=5, attributes={}).end(end_time=9)
    return list(exporter.get_finished_spans())


@pytest.fixture
def spans() -> Iterator[list[ReadableSpan]]:
    first = spans_of(Resource.create({"service.name": "wtm-scheduler", "n": 1}))
    second = spans_of(Resource.create({"service.name": "wtm-executor"}, schema_url="s://x"))
    # interleaved, as a batch from one process never is: grouping must still match
    yield [s for pair in zip(first, second, strict=True) for s in pair]


def assert_same(spans: list[ReadableSpan]) -> None:
    expected = library(spans)
    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert ours == expected
    assert ours.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )


def test_every_kind_of_span_encodes_as_the_exporter_encodes_it(
    spans: list[ReadableSpan],
) -> None:
    assert len(spans) >= 12
    assert_same(spans)
    for span in spans:  # one at a time too
        assert_same([span])


def test_the_wire_bytes_are_the_exporters_own(spans: list[ReadableSpan]) -> None:
    """Fields in field-number order: not only the same message, the same bytes."""
    assert encode_spans(spans[:1]) == library(spans[:1]).SerializeToString()


def test_an_attribute_that_cannot_be_encoded_is_left_out_as_the_exporter_does(
    spans: list[ReadableSpan],
) -> None:
    span = spans[0]
    span._attributes = {**span.attributes, "huge": 2**70}  # past int64: both drop it
    assert_same([span])
    assert b"huge" not in encode_spans([span])


def test_nothing_to_send_is_an_empty_request() -> None:
    assert encode_spans([]) == library([]).SerializeToString() == b""


def test_the_exporter_sends_the_request_written_here(spans: list[ReadableSpan]) -> None:
    """``SpanExporter`` replaces the library exporter's ``_translate_data`` (a private
    method: if a release renames it, this fails rather than the override going unused)."""
    assert "_translate_data" in vars(OTLPSpanExporter)
    exporter = SpanExporter(endpoint="http://127.0.0.1:9", insecure=True)
    try:
        assert exporter._translate_data(spans) == library(spans)
    finally:
        exporter.shutdown()
