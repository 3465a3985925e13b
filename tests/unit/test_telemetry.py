"""Trace context as text, and tracing that is off costs nothing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Link, SpanContext, Status, StatusCode

from common import telemetry, telemetry_setup
from services.common import logs
from tests.conftest import ROOT


def test_a_traceparent_round_trips() -> None:
    parent = telemetry.Parent(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7)
    assert parent.header() == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert telemetry.parse(parent.header()) == parent


@pytest.mark.parametrize("header", ["", "garbage", "00-zz-11-01", "00-1-2"])
def test_a_malformed_traceparent_is_ignored(header: str) -> None:
    assert telemetry.parse(header) is None


def test_without_an_endpoint_nothing_is_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert not telemetry_setup.export_configured()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    assert telemetry_setup.export_configured()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not telemetry_setup.export_configured()


@pytest.mark.parametrize(
    ("value", "wanted"),
    [(None, True), ("otlp", True), ("none", False), ("prometheus", False), (" OTLP ,x", True)],
)
def test_metrics_go_over_otlp_only_when_the_standard_variable_says_so(
    monkeypatch: pytest.MonkeyPatch, value: str | None, wanted: bool
) -> None:
    if value is None:
        monkeypatch.delenv("OTEL_METRICS_EXPORTER", raising=False)
    else:
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", value)
    assert telemetry_setup.otlp_metrics_wanted() is wanted


@pytest.mark.parametrize(
    ("otlp", "variable", "kept"),
    [(False, None, False), (True, None, True), (False, "always_on", True)],
)
def test_exemplars_are_kept_only_where_an_export_carries_them(
    monkeypatch: pytest.MonkeyPatch, otlp: bool, variable: str | None, kept: bool
) -> None:
    """A counter updated while a sampled span is current: with metrics going to Prometheus
    only, no exemplar is taken; over OTLP (or when the standard variable asks), it is."""
    from opentelemetry import context
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    if variable is None:
        monkeypatch.delenv("OTEL_METRICS_EXEMPLAR_FILTER", raising=False)
    else:
        monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", variable)
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader], exemplar_filter=telemetry_setup.exemplar_filter(otlp=otlp)
    )
    counter = provider.get_meter("test").create_counter("runs")
    span = trace.NonRecordingSpan(SpanContext(0xABC, 0xDEF, False, trace.TraceFlags(1)))
    token = context.attach(trace.set_span_in_context(span))
    try:
        counter.add(1, {"task": "noop"})
    finally:
        context.detach(token)
    data = reader.get_metrics_data()
    assert data is not None
    (point,) = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    assert point.value == 1
    assert bool(point.exemplars) is kept
    provider.shutdown()


def test_spans_are_not_recorded_while_tracing_is_off() -> None:
    assert not telemetry.enabled()
    assert telemetry.current() is None
    parent = telemetry.Parent(1, 2)
    telemetry.record_span("x", parent, 3, 0, 1, {})  # returns at once, raises nothing


def test_json_log_lines_carry_the_run() -> None:
    formatter = logs.JsonFormatter("scheduler")
    record = logging.LogRecord("wtm", logging.WARNING, __file__, 1, "lease expired", (), None)
    for key, value in logs.run_fields("r1", "detect", 2).items():
        setattr(record, key, value)
    doc = json.loads(formatter.format(record))
    assert doc["service"] == "scheduler" and doc["message"] == "lease expired"
    assert (doc["run_id"], doc["step_id"], doc["attempt"]) == ("r1", "detect", 2)


@pytest.mark.parametrize(("sampled", "traced"), [(True, True), (False, False)])
def test_a_run_is_traced_only_when_its_submit_was_sampled(
    monkeypatch: pytest.MonkeyPatch, sampled: bool, traced: bool
) -> None:
    """With OTEL_TRACES_SAMPLER dropping a submit's trace, its runs get no trace id (and so
    no spans anywhere)."""
    from opentelemetry import context, trace

    monkeypatch.setattr(telemetry, "_enabled", True)
    flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else trace.TraceFlags.DEFAULT)
    span = trace.NonRecordingSpan(trace.SpanContext(0xABC, 0xDEF, True, flags))
    token = context.attach(trace.set_span_in_context(span))
    try:
        assert (telemetry.current() == telemetry.Parent(0xABC, 0xDEF)) is traced
        assert (telemetry.current() is None) is not traced
    finally:
        context.detach(token)


def test_a_batch_submitted_without_a_trace_gives_each_run_a_trace_sampled_on_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sampler decides per run (a root of its own trace), so at a ratio of one half
    about half of a batch's runs are traced, not all or none of them."""
    from opentelemetry.sdk.trace import sampling

    monkeypatch.setattr(telemetry, "_enabled", True)
    every = telemetry.run_parents(50, sampler=sampling.ALWAYS_ON)
    assert all(p is not None and p.span_id == 0 for p in every)
    assert len({p.trace_id for p in every if p}) == 50
    assert telemetry.run_parents(50, sampler=sampling.ALWAYS_OFF) == [None] * 50
    half = telemetry.run_parents(400, sampler=sampling.TraceIdRatioBased(0.5))
    assert 120 < sum(p is not None for p in half) < 280  # binomial: sd 10
    # Parent-based, as OTEL_TRACES_SAMPLER=parentbased_traceidratio gives, and inside the
    # submit call's span, sampled or not: still each run's own decision.
    from opentelemetry.sdk.trace import TracerProvider

    ratio = sampling.ParentBasedTraceIdRatio(0.5)
    for decided in (sampling.ALWAYS_ON, sampling.ALWAYS_OFF):
        tracer = TracerProvider(sampler=decided).get_tracer("test")
        with tracer.start_as_current_span("SubmitRuns"):
            some = telemetry.run_parents(400, sampler=ratio)
            assert 120 < sum(p is not None for p in some) < 280


def test_a_batch_submitted_inside_a_clients_trace_stays_in_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider, sampling

    monkeypatch.setattr(telemetry, "_enabled", True)
    flags = trace.TraceFlags(trace.TraceFlags.SAMPLED)
    remote = trace.NonRecordingSpan(trace.SpanContext(0xABC, 0xDEF, True, flags))
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("SubmitRuns", context=trace.set_span_in_context(remote)):
        here = telemetry.current()
        assert here is not None and here.trace_id == 0xABC
        assert telemetry.run_parents(3, sampler=sampling.ALWAYS_ON) == [here] * 3
        assert telemetry.submit_link() == here.header()
    # A single run is the submit call's child whatever the sampler says.
    with tracer.start_as_current_span("SubmitRun"):
        assert telemetry.run_parents(1, sampler=sampling.ALWAYS_OFF) == [telemetry.current()]


def test_a_first_attempt_that_reads_nothing_needs_nothing_written_for_its_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attempt's span id comes from its lease and its parent was written at submit, so
    the dispatch round writes nothing for a traced one-step run (a Redis round trip saved)."""
    from services.scheduler import tracing

    monkeypatch.setattr(telemetry, "_enabled", True)
    trace_id, run_span = f"{0xABC:032x}", f"{0xDEF:016x}"
    step = {"lease": "tok.1", "span_parent": tracing.span_parent(trace_id, run_span)}
    fields, traceparent = tracing.step_fields(trace_id, run_span, {}, step, 1)
    assert fields == {}
    assert traceparent == telemetry.Parent(0xABC, tracing.attempt_span_id("tok.1")).header()
    assert tracing.attempt_span_id("tok.2") != tracing.attempt_span_id("tok.1")
    # A retry that read another step's output: its reason and its link are written.
    fields, _ = tracing.step_fields(
        trace_id, run_span, {"a": f"{7:016x}"}, {**step, "error": "x"}, 2
    )
    assert fields["retry_reason"] == "x"
    assert fields["links"] == f'["{telemetry.Parent(0xABC, 7).header()}"]'
    # A step submitted before parents were written at submit gets its parent now.
    assert "span_parent" in tracing.step_fields(trace_id, run_span, {}, {"lease": "t.1"}, 1)[0]


class _Kept(SimpleSpanProcessor):
    """Keeps the spans it is handed, in the SDK's own in-memory exporter."""

    def __init__(self) -> None:
        self.memory = InMemorySpanExporter()
        super().__init__(self.memory)

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.memory.get_finished_spans())


class _Ids(RandomIdGenerator):
    def __init__(self, trace_id: int, span_id: int) -> None:
        self.trace_id, self.span_id = trace_id, span_id

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return self.span_id


def _through_a_tracer(
    resource: Resource, name: str, parent: telemetry.Parent, span_id: int, error: str
) -> ReadableSpan:
    """The span as the SDK's own tracer records it (start, events, status, end)."""
    kept = _Kept()
    provider = TracerProvider(resource=resource, id_generator=_Ids(parent.trace_id, span_id))
    provider.add_span_processor(kept)
    span = provider.get_tracer("wtm.scheduler").start_span(
        name,
        context=parent.context() if parent.span_id else Context(),
        start_time=1_000,
        attributes={"wtm.run_id": "r1", "wtm.attempt": 2, "wtm.lineage": ["a -> b"]},
        links=[Link(SpanContext(7, 8, True, telemetry.SAMPLED))],
    )
    span.add_event("dispatched", {"wtm.executor_id": "e1"}, timestamp=1_100)
    span.add_event("received", {}, timestamp=1_200)
    if error:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end(end_time=2_000)
    return kept.spans[0]


def _recorded_finished(
    monkeypatch: pytest.MonkeyPatch, parent: telemetry.Parent, error: str
) -> tuple[ReadableSpan, ReadableSpan]:
    """A step span recorded finished (``record_span``), and the same through a tracer."""
    resource = Resource.create({"service.name": "wtm-scheduler"})
    kept = _Kept()
    monkeypatch.setattr(telemetry, "_enabled", True)
    monkeypatch.setattr(telemetry, "_recorder", None)
    telemetry.record_to(kept, resource)  # reads the span limits, as setup() does
    telemetry.record_span(
        "step s #2",
        parent,
        0x1234,
        1_000,
        2_000,
        {"wtm.run_id": "r1", "wtm.attempt": 2, "wtm.lineage": ["a -> b"], "none": None},
        events=[("dispatched", 1_100, {"wtm.executor_id": "e1"}), ("received", 1_200, {})],
        links=[telemetry.Parent(7, 8)],
        error=error,
        tracer_name="wtm.scheduler",
    )
    [recorded] = kept.spans
    return recorded, _through_a_tracer(resource, "step s #2", parent, 0x1234, error)


@pytest.mark.parametrize(
    ("parent", "error"),
    [(telemetry.Parent(0xABC, 0xDEF), ""), (telemetry.Parent(0xABC, 0), "it failed")],
    ids=["child", "root-with-error"],
)
def test_a_span_recorded_finished_is_the_one_a_tracer_would_record(
    monkeypatch: pytest.MonkeyPatch, parent: telemetry.Parent, error: str
) -> None:
    recorded, expected = _recorded_finished(monkeypatch, parent, error)
    assert encode_spans([recorded]) == encode_spans([expected])
    assert recorded.context.span_id == 0x1234 and recorded.context.trace_id == 0xABC


@pytest.mark.parametrize(
    "limits",
    [
        {"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "3"},
        {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "1"},
        {"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "1", "OTEL_SPAN_EVENT_ATTRIBUTE_COUNT_LIMIT": "0"},
        {"OTEL_SPAN_EVENT_COUNT_LIMIT": "1", "OTEL_SPAN_LINK_COUNT_LIMIT": "0"},
    ],
    ids=["value-length", "attribute-count", "event-attributes", "event-and-link-count"],
)
def test_a_span_recorded_finished_keeps_the_sdks_span_limits(
    monkeypatch: pytest.MonkeyPatch, limits: dict[str, str]
) -> None:
    for name, value in limits.items():
        monkeypatch.setenv(name, value)
    recorded, expected = _recorded_finished(monkeypatch, telemetry.Parent(0xABC, 0xDEF), "")
    assert encode_spans([recorded]) == encode_spans([expected])
    dropped = (recorded.dropped_attributes, recorded.dropped_events, recorded.dropped_links)
    assert dropped == (expected.dropped_attributes, expected.dropped_events, expected.dropped_links)


def test_a_past_child_is_the_span_a_tracer_would_record(monkeypatch: pytest.MonkeyPatch) -> None:
    resource = Resource.create({"service.name": "wtm-executor"})
    ids = _Ids(0xABC, 0x111)
    kept = _Kept()
    provider = TracerProvider(resource=resource, id_generator=ids)
    provider.add_span_processor(kept)
    monkeypatch.setattr(telemetry, "_enabled", True)
    monkeypatch.setattr(telemetry, "_recorder", None)
    telemetry.record_to(kept, resource)
    execute = provider.get_tracer("wtm.executor").start_span("execute noop")
    telemetry.past_child("process()", 5_000, 4_000, parent=execute, **{"wtm.n": 1})
    [recorded] = kept.spans
    ids.span_id = recorded.context.span_id  # the reference gets the id past_child drew
    reference = provider.get_tracer("wtm").start_span(
        "process()",
        context=trace.set_span_in_context(execute),
        start_time=5_000,
        attributes={"wtm.n": 1},
    )
    reference.end(end_time=5_000)  # an end before the start is clamped to it
    assert recorded.parent == execute.get_span_context()
    assert encode_spans([recorded]) == encode_spans([kept.spans[1]])


def test_an_executors_stream_gets_no_server_span() -> None:
    traced = telemetry_setup._server_filter()
    assert not traced(SimpleNamespace(method="/wtm.executor.v1.ExecutorService/Connect"))
    assert not traced(SimpleNamespace(method="/wtm.scheduler.v1.SchedulerService/GetRun"))
    assert traced(SimpleNamespace(method="/wtm.scheduler.v1.SchedulerService/SubmitRun"))


def test_an_executors_stream_gets_no_server_span_even_when_reads_are_traced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WTM_TRACE_READS", "1")
    traced = telemetry_setup._server_filter()
    assert traced(SimpleNamespace(method="/wtm.scheduler.v1.SchedulerService/GetRun"))
    assert traced(SimpleNamespace(method="/grpc.health.v1.Health/Check"))
    assert not traced(SimpleNamespace(method="/wtm.executor.v1.ExecutorService/Connect"))


# Run in a process of its own: instrumenting grpc.aio and setting the tracer provider are
# global and cannot be undone for the rest of a test session.
_UNTRACED_CHANNEL = """
import asyncio
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1 import _async as health_aio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from common import telemetry_setup, tls

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
telemetry_setup._instrument_grpc("", "aio")

async def main():
    server = aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    for traced in (True, False):
        async with tls.aio_channel(f"127.0.0.1:{port}", traced=traced) as channel:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        print(traced, [s.name for s in exporter.get_finished_spans()])
        exporter.clear()
    await server.stop(None)

asyncio.run(main())
"""


def test_an_untraced_channel_makes_no_client_spans_in_a_traced_process() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WTM_TLS", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", _UNTRACED_CHANNEL],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "True ['/grpc.health.v1.Health/Check']",
        "False []",
    ]


def test_a_late_span_is_recorded_when_it_ends_with_what_happened_under_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An execution span timed by ``late_span``: its children (a past child) hang under it,
    a phase skipped is named on it, its own attributes are the ones set before the end; an
    exception leaving it marks it failed with the SDK's ``exception`` event."""
    kept = _Kept()
    monkeypatch.setattr(telemetry, "_enabled", True)
    monkeypatch.setattr(telemetry, "_recorder", None)
    telemetry.record_to(kept, Resource.create({"service.name": "wtm-executor"}))
    parent = telemetry.Parent(0xABC, 0xDEF)
    with telemetry.late_span("execute noop", parent, {"wtm.attempt": 1}, "wtm.executor") as span:
        with telemetry.skipped("load package"):
            pass
        telemetry.past_child("process()", 5_000, 6_000)
        span.set_attribute("wtm.outcome", "SUCCEEDED")
    child, execute = kept.spans
    assert execute.name == "execute noop" and execute.parent is not None
    assert (execute.context.trace_id, execute.parent.span_id) == (0xABC, 0xDEF)
    assert execute.instrumentation_scope is not None
    assert execute.instrumentation_scope.name == "wtm.executor"
    assert dict(execute.attributes or {}) == {
        "wtm.attempt": 1,
        "wtm.skipped": ("load package",),
        "wtm.outcome": "SUCCEEDED",
    }
    assert execute.status.status_code == StatusCode.UNSET
    assert execute.start_time is not None and execute.end_time is not None
    assert execute.start_time <= execute.end_time
    assert child.name == "process()" and child.parent is not None
    assert child.parent.span_id == execute.context.span_id
    assert trace.get_current_span().get_span_context().is_valid is False  # left as it was

    with pytest.raises(ValueError), telemetry.late_span("execute bad", parent, {}):
        raise ValueError("no input")
    failed = kept.spans[-1]
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "ValueError: no input"
    [event] = failed.events
    assert event.name == "exception" and event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "no input"
    assert "raise ValueError" in str(event.attributes["exception.stacktrace"])


def test_late_spans_share_one_call_each_in_its_own_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The steps of a dynamic batch: one span per step, each under its own parent, timed
    around the one call, none made current; a child recorded under each; an exception
    leaving the call marks every one failed."""
    kept = _Kept()
    monkeypatch.setattr(telemetry, "_enabled", True)
    monkeypatch.setattr(telemetry, "_recorder", None)
    telemetry.record_to(kept, Resource.create({"service.name": "wtm-executor"}))
    parents = [telemetry.Parent(0xA1, 0xB1), telemetry.Parent(0xA2, 0xB2)]
    items = [("execute vad", p, {"wtm.call_size": 2}) for p in parents]
    with telemetry.late_spans(items, "wtm.executor") as lates:
        assert trace.get_current_span().get_span_context().is_valid is False
        for late in lates:
            telemetry.past_child("process_batch()", 5_000, 6_000, parent=late.here)
        lates[1].error = "item 1: bad input"
    children, spans = kept.spans[:2], kept.spans[2:]
    assert [s.name for s in spans] == ["execute vad", "execute vad"]
    for span, parent, child in zip(spans, parents, children, strict=True):
        assert span.parent is not None and child.parent is not None
        assert (span.context.trace_id, span.parent.span_id) == (parent.trace_id, parent.span_id)
        assert child.name == "process_batch()" and child.context.trace_id == parent.trace_id
        assert child.parent.span_id == span.context.span_id
        assert dict(span.attributes or {}) == {"wtm.call_size": 2}
    assert spans[0].start_time == spans[1].start_time and spans[0].end_time == spans[1].end_time
    assert [s.status.status_code for s in spans] == [StatusCode.UNSET, StatusCode.ERROR]
    assert spans[1].status.description == "item 1: bad input"

    with pytest.raises(OSError), telemetry.late_spans(items) as lates:
        raise OSError("worker died")
    failed = kept.spans[-2:]
    assert [s.status.description for s in failed] == ["OSError: worker died"] * 2
    assert all([e.name for e in s.events] == ["exception"] for s in failed)


def test_a_late_span_records_nothing_while_tracing_is_off() -> None:
    with telemetry.late_span("execute noop", telemetry.Parent(1, 2), {}) as span:
        span.set_attribute("wtm.outcome", "SUCCEEDED")
        telemetry.past_child("process()", 1, 2)
    with telemetry.late_spans([("execute vad", telemetry.Parent(1, 2), {})]) as lates:
        assert lates[0].here is None
        telemetry.past_child("process_batch()", 1, 2, parent=lates[0].here)
    assert trace.get_current_span().get_span_context().is_valid is False
