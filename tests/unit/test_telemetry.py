"""Trace context as text, and tracing that is off costs nothing."""

from __future__ import annotations

import json
import logging

import pytest

from common import telemetry
from services.common import logs


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
    assert not telemetry.export_configured()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    assert telemetry.export_configured()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not telemetry.export_configured()


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
