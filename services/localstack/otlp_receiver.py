"""An in-process OTLP/gRPC receiver that keeps the spans it is sent (and drops metrics):
for tests that check traces, and for the benchmark's tracing-on figures. Listens on
127.0.0.1 only."""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    links: list[str]


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@dataclass
class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span it is sent; with ``keep=False`` only counts them (``received``), so
    that a benchmark measures what exporting costs the services, not what turning spans into
    Python objects costs this process on the same cores."""

    keep: bool = True
    received: int = 0
    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: Any = None

    def start(self) -> int:
        """Serve on a free port of 127.0.0.1; returns the port."""
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsSink(), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        return int(port)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(None)

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        with self.lock:
            if not self.keep:
                self.received += sum(
                    len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans
                )
                return trace_service_pb2.ExportTraceServiceResponse()
            for rs in request.resource_spans:
                attrs = {a.key: _value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append(
                            Span(
                                attrs.get("service.name", ""),
                                s.name,
                                s.trace_id.hex(),
                                s.span_id.hex(),
                                s.parent_span_id.hex(),
                                {a.key: _value(a.value) for a in s.attributes},
                                [link.span_id.hex() for link in s.links],
                            )
                        )
        return trace_service_pb2.ExportTraceServiceResponse()

    def of(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]


class _MetricsSink(metrics_service_pb2_grpc.MetricsServiceServicer):
    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
        return metrics_service_pb2.ExportMetricsServiceResponse()
