"""Turning OpenTelemetry on for a process (``setup``) and off (``shutdown``): the trace
exporter and its batch processor, the Prometheus and OTLP metric readers, and gRPC's
instrumentation with the calls it leaves untraced. What the process then records — spans,
phases, the run and step spans recorded late — is ``common.telemetry``'s; ``setup`` hands it
the exporting processor and turns it on.

Tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set and
``OTEL_SDK_DISABLED`` is not true; the exporter reads the other standard ``OTEL_*`` variables
itself. Metrics go to a Prometheus scrape endpoint when the service is given a metrics port,
and to the OTLP endpoint when tracing is on; without either, the meters are no-ops.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)


def export_configured() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def otlp_metrics_wanted() -> bool:
    """Whether metrics go over OTLP too (as well as to the Prometheus port): when the
    standard ``OTEL_METRICS_EXPORTER`` names ``otlp``, as it does unset. Jaeger's OTLP
    receiver takes traces only (it answers a metrics export with UNIMPLEMENTED, every
    minute), so the deployments set it to ``none`` and scrape the scheduler's Prometheus
    port."""
    names = os.environ.get("OTEL_METRICS_EXPORTER", "otlp")
    return "otlp" in (name.strip().lower() for name in names.split(","))


def setup(
    service: str,
    grpc_server: str = "",
    grpc_client: str = "",
    metrics_port: int = 0,
    metrics_host: str = "127.0.0.1",
) -> None:
    """Turn tracing (and metrics) on for this process as configured.

    ``grpc_server`` / ``grpc_client``: "aio" or "sync" — which gRPC flavour to instrument.
    (The SDK is imported here, not with the module: the CLI asks ``export_configured`` on
    every command, and a command that traces nothing need not load it, ~100 ms.)
    """
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from common import telemetry

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    readers: list[Any] = []
    if metrics_port:
        import prometheus_client
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        prometheus_client.start_http_server(metrics_port, addr=metrics_host)
        readers.append(PrometheusMetricReader())
    if export_configured():
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        from common.span_encoding import SpanExporter

        provider = TracerProvider(resource=resource)
        exporting = BatchSpanProcessor(SpanExporter())
        provider.add_span_processor(exporting)
        trace.set_tracer_provider(provider)
        if otlp_metrics_wanted():
            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        _instrument_grpc(grpc_server, grpc_client)
        telemetry.start_recording(exporting, provider.resource)
        log.info("tracing on: exporting to %s", os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    if readers:
        from opentelemetry.sdk.metrics import MeterProvider

        metrics.set_meter_provider(
            MeterProvider(
                resource=resource,
                metric_readers=readers,
                exemplar_filter=exemplar_filter(otlp=telemetry.enabled() and otlp_metrics_wanted()),
            )
        )


def exemplar_filter(otlp: bool) -> Any:
    """Which measurements keep an exemplar (the trace and span they were made in). Only an
    OTLP metric export carries exemplars; the Prometheus reader drops them. So unless metrics
    go over OTLP, or ``OTEL_METRICS_EXEMPLAR_FILTER`` asks for them, none are kept: with the
    SDK's default (``trace_based``) every counter and histogram update made while a sampled
    span is current — every one the scheduler makes for a traced run — paid for one (~2 µs
    each) that nothing read. ``None``: the SDK's own choice from the standard variable."""
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter

    if otlp or os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER"):
        return None
    return AlwaysOffExemplarFilter()


# Calls that read or poll (and health checks, reflection) get no server span of their own:
# a client waiting on a run asks GetRun over and over, and those spans were a fifth of all
# spans and a third of the scheduler's. WTM_TRACE_READS=1 traces them too.
UNTRACED_READS = (
    "GetRun", "WatchRun", "ListRuns", "ListExecutors", "ListQueues", "ListNamespaces",
    "CheckDependencies", "ListTasks", "ListPipelines", "ListApiKeys", "ListAuditEvents",
    "ListArtifacts", "GetSchedule", "ListSchedules",
)  # fmt: skip
# An executor's stream (``Connect``) is never wrapped in a span, at either end: it lasts the
# executor's whole session, so its one span (exported when the session ends, hours later)
# would say nothing, while the instrumentation's wrapper is in the way of every message
# that crosses it. Its steps are traced through the ``traceparent`` each assignment carries.
STREAM_METHODS = ("Connect",)
UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")


def _server_filter() -> Any:
    """Which calls get a server span."""
    from opentelemetry.instrumentation.grpc import filters

    untraced = [filters.method_name(m) for m in STREAM_METHODS]
    if os.environ.get("WTM_TRACE_READS", "") not in ("1", "true", "yes"):
        untraced += [filters.method_name(m) for m in UNTRACED_READS]
        untraced += [filters.service_name(s) for s in UNTRACED_SERVICES]
    return filters.negate(filters.any_of(*untraced))


# grpc.aio's channel constructors as they were before the client instrumentation replaced
# them with ones that add its interceptors: what ``untraced_aio_channels`` gives.
_plain_aio_channels: tuple[Any, Any] | None = None


def untraced_aio_channels() -> tuple[Any, Any]:
    """``(insecure_channel, secure_channel)`` of grpc.aio that make channels without the
    tracing interceptors (for an executor's stream: see ``STREAM_METHODS``). A filtered
    interceptor would not do: any interceptor on an asyncio channel puts every message of a
    stream through a Python wrapper."""
    from grpc import aio

    return _plain_aio_channels or (aio.insecure_channel, aio.secure_channel)


def _instrument_grpc(server: str, client: str) -> None:
    global _plain_aio_channels
    from grpc import aio
    from opentelemetry.instrumentation import grpc as otel_grpc

    if server == "aio":
        otel_grpc.GrpcAioInstrumentorServer(filter_=_server_filter()).instrument()
    elif server == "sync":
        otel_grpc.GrpcInstrumentorServer(filter_=_server_filter()).instrument()
    if client == "aio":
        _plain_aio_channels = _plain_aio_channels or (aio.insecure_channel, aio.secure_channel)
        otel_grpc.GrpcAioInstrumentorClient().instrument()
    elif client == "sync":
        otel_grpc.GrpcInstrumentorClient().instrument()


def shutdown() -> None:
    """Flush what is buffered (at process exit)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
