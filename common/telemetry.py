"""OpenTelemetry spans for the services and the CLI: what a process records once
``common.telemetry_setup.setup`` has turned tracing on (it is on when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set). When it is off, no provider is installed, gRPC is not
instrumented and every helper here returns at once: nothing is exported and nothing is
slowed down.

A run's trace outlives any one call: the run span and each step attempt's span are written
when they *end* (possibly by another scheduler replica), while their children — the
executor's execution span, the next step — are created earlier and elsewhere. So their span
ids are chosen up front (``new_span_id``), kept with the run in Redis, and used when the span
is finally recorded (``record_span``): built finished, with its preset id, and handed to the
batch processor that exports spans (a quarter of the CPU of starting and ending it through
a tracer: no sampler to ask, its trace was sampled at submit; nothing to lock or validate).

"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import random
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
)
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

log = logging.getLogger(__name__)
_enabled = False
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)


@dataclass(frozen=True)
class _Recorder:
    """Where ``record_span`` puts the spans it builds finished, and the span limits it keeps
    them within (the SDK's, from the standard ``OTEL_SPAN_*`` / ``OTEL_ATTRIBUTE_*``
    variables, read when tracing is set up)."""

    processor: SpanProcessor
    resource: Resource
    limits: SpanLimits


_recorder: _Recorder | None = None
_scopes: dict[str, InstrumentationScope] = {}


def record_to(processor: SpanProcessor, resource: Resource) -> None:
    """Spans recorded finished (``record_span``) go to ``processor`` (``telemetry_setup``
    gives it the batch processor that exports; tests, one that keeps them)."""
    global _recorder
    _recorder = _Recorder(processor, resource, SpanLimits())


def start_recording(processor: SpanProcessor, resource: Resource) -> None:
    """Record this process's spans from now on, to ``processor`` (``telemetry_setup.setup``,
    once the tracer provider is set and gRPC instrumented): tracers made before it are made
    again from the new provider."""
    global _enabled
    record_to(processor, resource)
    _tracers.clear()
    _enabled = True


def enabled() -> bool:
    """Whether this process records spans."""
    return _enabled


_tracers: dict[str, trace.Tracer] = {}


def tracer(name: str) -> trace.Tracer:
    """The named tracer, made once: ``trace.get_tracer`` builds a new one (and compares
    instrumentation scopes) on every call, which was 40% of recording a span."""
    found = _tracers.get(name)
    if found is None:
        found = _tracers[name] = trace.get_tracer(name)
    return found


# Span contexts as text, for Redis and the executor stream ----------------------------------


@dataclass(frozen=True)
class Parent:
    """Where a span hangs: a trace id and a parent span id."""

    trace_id: int
    span_id: int

    def header(self) -> str:
        """W3C ``traceparent``."""
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-01"

    def context(self) -> Any:
        span = NonRecordingSpan(SpanContext(self.trace_id, self.span_id, True, SAMPLED))
        return trace.set_span_in_context(span)


def parse(header: str) -> Parent | None:
    """A ``traceparent`` header, or None when it is empty or malformed."""
    parts = header.split("-") if header else []
    if len(parts) != 4:
        return None
    try:
        return Parent(int(parts[1], 16), int(parts[2], 16))
    except ValueError:
        return None


def current() -> Parent | None:
    """The active span (e.g. the gRPC server span of the call being served), if it is
    sampled: a run submitted in a trace the sampler dropped (``OTEL_TRACES_SAMPLER``, e.g.
    ``parentbased_traceidratio`` with ``OTEL_TRACES_SAMPLER_ARG=0.1``) is not traced."""
    if not _enabled:
        return None
    ctx = trace.get_current_span().get_span_context()
    return Parent(ctx.trace_id, ctx.span_id) if ctx.is_valid and ctx.trace_flags.sampled else None


def new_span_id() -> int:
    return random.getrandbits(64) or 1


def run_parents(count: int, sampler: Any = None) -> list[Parent | None]:
    """Where each of ``count`` runs submitted in one call hangs its trace (None: not traced).

    One run, or runs submitted inside a trace the *client* started: under the call's server
    span, as ``current()`` says. Otherwise (a batch submitted without a trace) each run is
    the root of a trace of its own, sampled on its own (``Parent(trace_id, 0)``): one trace
    per run, as a workflow engine gives, so a sampling ratio samples runs and not whole
    batches of them. The run span then links to the submit call's span (``submit_link``).
    ``sampler``: the provider's, unless given (tests)."""
    if not _enabled and sampler is None:
        return [None] * count
    span = trace.get_current_span()
    remote = getattr(span, "parent", None)
    if count == 1 or (remote is not None and remote.is_remote):
        return [current()] * count
    if sampler is None:
        sampler = getattr(trace.get_tracer_provider(), "sampler", None)
    parents: list[Parent | None] = []
    for _ in range(count):
        trace_id = random.getrandbits(128) or 1
        # An empty context: the root's decision, not the submit call's (parent-based).
        decision = sampler.should_sample(Context(), trace_id, "run") if sampler else None
        parents.append(Parent(trace_id, 0) if decision and decision.decision.is_sampled() else None)
    return parents


def submit_link() -> str:
    """The current (submit call's) span as a ``traceparent``, when it is sampled: what a
    batch's runs, each a trace of its own, link to."""
    here = current()
    return here.header() if here is not None else ""


def _traced_here(span: Any) -> bool:
    """Whether ``span`` is one whose children are recorded: a recording span, or the
    context a ``late_span`` is current with."""
    if span.is_recording():
        return True
    ctx = span.get_span_context()
    return _late.get() is not None and ctx.is_valid and bool(ctx.trace_flags.sampled)


@contextlib.contextmanager
def phase(name: str, **attributes: Any) -> Iterator[None]:
    """A child span of the current one, when there is a recording current span."""
    if not _enabled or not _traced_here(trace.get_current_span()):
        yield
        return
    with tracer("wtm").start_as_current_span(name, attributes=attributes):
        yield


@contextlib.contextmanager
def skipped(name: str) -> Iterator[None]:
    """A phase known to take no time this once (a cache hit): no span of its own, only its
    name in the current span's ``wtm.skipped``, so that a warm step costs fewer spans."""
    current = trace.get_current_span()
    late = _late.get()
    if _enabled and current.is_recording():
        before = getattr(current, "attributes", None) or {}
        current.set_attribute("wtm.skipped", [*before.get("wtm.skipped", ()), name])
    elif _enabled and late is not None:  # the current span is a late one
        late.attributes["wtm.skipped"] = (*late.attributes.get("wtm.skipped", ()), name)
    yield


@dataclass
class LateSpan:
    """A span being timed by ``late_span`` or ``late_spans``: what it will be recorded with
    when it ends. ``here`` names it, for children recorded under it (``past_child``)."""

    attributes: dict[str, Any]
    error: str = ""
    here: Parent | None = None

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value


_late: contextvars.ContextVar[LateSpan | None] = contextvars.ContextVar("wtm_late", default=None)


def _exception_attributes(exc: BaseException) -> dict[str, Any]:
    """An ``exception`` event's attributes, as the SDK's ``record_exception`` writes them."""
    kind, module = type(exc).__qualname__, type(exc).__module__
    return {
        "exception.type": f"{module}.{kind}" if module and module != "builtins" else kind,
        "exception.message": str(exc),
        "exception.stacktrace": "".join(traceback.format_exception(exc)),
        "exception.escaped": "False",
    }


@contextlib.contextmanager
def late_span(
    name: str, parent: Parent, attributes: dict[str, Any], tracer_name: str = "wtm"
) -> Iterator[LateSpan]:
    """A span of a sampled trace, timed around the block and recorded when it ends, as
    ``record_span`` records one: a third of the CPU of a tracer's live span (no sampler, no
    attribute checks on the way, no span processor to start it). Meanwhile its context is the
    current one, so that what starts under it (phases, gRPC calls, ``past_child``) is its
    child. An exception that leaves the block marks it failed, with an ``exception`` event,
    as a tracer's span does."""
    with late_spans([(name, parent, attributes)], tracer_name) as (late,):
        if late.here is None:  # tracing is off: nothing to make current or record
            yield late
            return
        here = SpanContext(late.here.trace_id, late.here.span_id, False, SAMPLED)
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(here)))
        late_token = _late.set(late)
        try:
            yield late
        finally:
            _late.reset(late_token)
            otel_context.detach(token)


@contextlib.contextmanager
def late_spans(
    spans: Sequence[tuple[str, Parent, dict[str, Any]]], tracer_name: str = "wtm"
) -> Iterator[list[LateSpan]]:
    """Spans of sampled traces (a name, a parent and attributes each), all timed around the
    one block and recorded when it ends, as ``late_span`` records one; none is made current
    (the steps of a dynamic batch, each of its own run, share one call). An exception that
    leaves the block marks every one failed, with an ``exception`` event."""
    lates = [LateSpan(dict(attributes)) for _, _, attributes in spans]
    if not _enabled:
        yield lates
        return
    for late, (_, parent, _) in zip(lates, spans, strict=True):
        late.here = Parent(parent.trace_id, new_span_id())
    start = time.time_ns()
    events: list[tuple[str, int, dict[str, Any]]] = []
    try:
        yield lates
    except BaseException as exc:
        for late in lates:
            late.error = late.error or f"{type(exc).__name__}: {exc}"
        events.append(("exception", time.time_ns(), _exception_attributes(exc)))
        raise
    finally:
        end = time.time_ns()
        for late, (name, parent, _) in zip(lates, spans, strict=True):
            assert late.here is not None
            record_span(
                name, parent, late.here.span_id, start, end, late.attributes, events,
                error=late.error, tracer_name=tracer_name,
            )  # fmt: skip


def error_status(message: str) -> Status:
    return Status(StatusCode.ERROR, message[:500])


def past_child(
    name: str, start_ns: int, end_ns: int, parent: Any = None, **attributes: Any
) -> None:
    """A child span, of ``parent`` (a span, or a ``Parent`` naming a late one) or else of the
    current one, for something that already happened: built finished, as ``record_span``
    does."""
    recorder = _recorder
    if not _enabled or recorder is None:
        return
    if isinstance(parent, Parent):
        above = SpanContext(parent.trace_id, parent.span_id, False, SAMPLED)
    else:
        parent = parent or trace.get_current_span()
        if not _traced_here(parent):
            return
        above = parent.get_span_context()
    recorder.processor.on_end(
        ReadableSpan(
            name=name,
            context=SpanContext(
                above.trace_id, new_span_id(), False, SAMPLED, trace_state=above.trace_state
            ),
            parent=above,
            resource=recorder.resource,
            attributes=_bounded(
                attributes,
                recorder.limits.max_span_attributes,
                recorder.limits.max_span_attribute_length,
            ),
            kind=SpanKind.INTERNAL,
            status=_UNSET,
            start_time=start_ns,
            end_time=max(end_ns, start_ns),
            instrumentation_scope=_scope("wtm"),
        )
    )


def _over(count: int, limit: int | None) -> bool:
    return limit is not None and count > limit


def _bounded(attributes: dict[str, Any], count: int | None, length: int | None) -> Any:
    """Attributes within the SDK's limits (at most ``count`` of them, string values cut to
    ``length``), as its tracer would keep them; the dict itself while there is nothing to
    bound (the defaults: 128 attributes, any length)."""
    if length is None and not _over(len(attributes), count):
        return attributes
    return BoundedAttributes(count, attributes, max_value_len=length)


def _scope(name: str) -> InstrumentationScope:
    """The instrumentation scope a tracer of that name gives its spans."""
    found = _scopes.get(name)
    if found is None:
        found = _scopes[name] = InstrumentationScope(name)
    return found


def record_span(
    name: str,
    parent: Parent,
    span_id: int,
    start_ns: int,
    end_ns: int,
    attributes: dict[str, Any],
    events: Iterable[tuple[str, int, dict[str, Any]]] = (),
    links: Sequence[Parent] = (),
    error: str = "",
    tracer_name: str = "wtm",
) -> None:
    """Record a finished span whose id was chosen in advance, of a run whose trace was
    sampled. A ``parent`` whose span id is 0 names only the trace: the span is that trace's
    root."""
    recorder = _recorder
    if not _enabled or recorder is None:
        return
    limits = recorder.limits
    made_events: Sequence[Event] = [
        Event(
            event,
            _bounded(attrs, limits.max_event_attributes, limits.max_attribute_length),
            at_ns,
        )
        for event, at_ns, attrs in events
    ]
    if _over(len(made_events), limits.max_events):  # the SDK keeps the last ones
        made_events = BoundedList.from_seq(limits.max_events, made_events)
    made_links: Sequence[Link] = [
        Link(SpanContext(p.trace_id, p.span_id, True, SAMPLED)) for p in links
    ]
    if _over(len(made_links), limits.max_links):
        made_links = BoundedList.from_seq(limits.max_links, made_links)
    recorder.processor.on_end(
        ReadableSpan(
            name=name,
            context=SpanContext(parent.trace_id, span_id, False, SAMPLED),
            parent=SpanContext(parent.trace_id, parent.span_id, True, SAMPLED)
            if parent.span_id
            else None,
            resource=recorder.resource,
            attributes=_bounded(
                {k: v for k, v in attributes.items() if v not in (None, "")},
                limits.max_span_attributes,
                limits.max_span_attribute_length,
            ),
            events=made_events,
            links=made_links,
            kind=SpanKind.INTERNAL,
            status=error_status(error) if error else _UNSET,
            start_time=start_ns,
            end_time=end_ns,
            instrumentation_scope=_scope(tracer_name),
        )
    )
