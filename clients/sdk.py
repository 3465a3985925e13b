"""The Python SDK: register tasks, submit runs, watch and wait for them.

    from clients import Client

    with Client("127.0.0.1:50051", "127.0.0.1:50052") as client:
        client.register_task("tasks/examples/text_sentiment")
        run = client.run(task="text_sentiment", input={"text": "I love it"})
        print(run.output)

Results are typed dataclasses (``clients.types``); the generated gRPC classes stay behind
them. Errors are ``clients.errors``: one class per status code users handle
(``NotFound``, ``InvalidArgument`` with its ``field``...), and ``RunFailedError`` and its
siblings from ``run()`` and ``wait()``. Calls go through the client core
(``common.client_core``): TLS, the key, a deadline on every call, and retries while a
service is UNAVAILABLE. ``clients.aio.AsyncClient`` is the same for asyncio.

The runs' methods are here; ``Client`` takes the rest from ``clients.catalog`` (tasks,
pipelines, artifacts), ``clients.schedules`` and ``clients.operations`` (keys, the audit
log, executors, queues, limits, namespaces, dependencies), and its settings, channels and
stubs from ``clients.connection``, as ``AsyncClient`` does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from clients import requests
from clients.catalog import CatalogMethods
from clients.connection import Connection, NotFinished, resolve_key
from clients.errors import (
    ApiError,
    DeadlineExceeded,
    Unavailable,
    WaitTimeoutError,
)
from clients.operations import OperatorMethods
from clients.schedules import ScheduleMethods
from clients.types import (
    ApiKeyInfo,
    ArtifactInfo,
    CancelledRuns,
    DependencyInfo,
    ExecutorInfo,
    ExecutorPauseInfo,
    ExecutorResumed,
    NamespaceInfo,
    PipelineInfo,
    PipelineStepInfo,
    QueueInfo,
    QueuePauseInfo,
    ResumedRuns,
    RunEventInfo,
    RunInfo,
    SignaledRuns,
    StepInfo,
    TaskInfo,
    TaskLimitsInfo,
)
from common import refs
from common.client_core import DEFAULT_RETRY_SECONDS, Caller
from wtm.v1 import scheduler_service_pb2 as spb

# What callers import from here: the client, and the types of its results (those of the
# methods in clients.catalog and clients.operations too, importable from here as before).
__all__ = [
    "ApiError",
    "Client",
    "resolve_key",
    "ApiKeyInfo",
    "ArtifactInfo",
    "CancelledRuns",
    "DependencyInfo",
    "ExecutorInfo",
    "ExecutorPauseInfo",
    "ExecutorResumed",
    "NamespaceInfo",
    "PipelineInfo",
    "PipelineStepInfo",
    "QueueInfo",
    "QueuePauseInfo",
    "ResumedRuns",
    "SignaledRuns",
    "RunEventInfo",
    "RunInfo",
    "StepInfo",
    "TaskInfo",
    "TaskLimitsInfo",
]


class Client(Connection, CatalogMethods, ScheduleMethods, OperatorMethods):
    """A connection to the registry and the scheduler.

    Every method raises the ``clients.errors`` class of the status a call failed with
    (``NotFound``, ``InvalidArgument``, ``PermissionDenied``, ``Unavailable`` once the
    retries are spent, ...); only the exceptions particular to a method are listed on it.
    """

    _caller = Caller
    _r: Caller
    _s: Caller

    def __init__(
        self,
        registry: str = "",
        scheduler: str = "",
        token: str = "",
        timeout: float = 30.0,
        api_key: str | None = None,
        tls_ca: str | None = None,
        api_key_file: str = "",
        namespace: str | None = None,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        raise_on_failure: bool = True,
    ) -> None:
        """Connect (lazily: the first call opens the channels).

        Args:
            registry: the registry's address, host:port (default ``WTM_REGISTRY_ADDR``, else
                127.0.0.1:50051).
            scheduler: the scheduler's address, host:port (default ``WTM_SCHEDULER_ADDR``,
                else 127.0.0.1:50052).
            api_key: the key to present (``token`` is its older name); by default the one
                in ``WTM_API_KEY``, or in the file ``api_key_file`` or ``WTM_API_KEY_FILE``
                names.
            tls_ca: the CA to check the services' certificates against (default
                ``WTM_TLS_CA``; "" and no such variable: plaintext).
            namespace: the one to act in (default ``WTM_NAMESPACE``); a key bound to a
                namespace acts in it without saying so.
            timeout: the deadline of each call, in seconds.
            retry_seconds: how long a call answered UNAVAILABLE is retried (0: never).
            raise_on_failure: whether ``run`` and ``wait`` raise ``RunError`` for a run that
                did not complete (each call may say otherwise).

        Raises:
            Unauthenticated: the key file cannot be read.
        """
        key = resolve_key(api_key or token, api_key_file)
        self._connect(
            registry, scheduler, key, tls_ca, namespace, timeout, retry_seconds, raise_on_failure
        )

    def close(self) -> None:
        self._r.close()
        self._s.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Runs --------------------------------------------------------------------------------

    def submit(
        self,
        task: str = "",
        pipeline: str = "",
        input: dict[str, Any] | None = None,  # noqa: A002
        priority: int = 0,
        request_id: str = "",
        labels: dict[str, str] | None = None,
        cache: bool | None = None,
        run_timeout: float | None = None,
        start_delay: float | None = None,
    ) -> RunInfo:
        """Submit a run of a task or a pipeline on one input document; returns at once.

        Args:
            task: "task_id" or "task_id@version" (or ``pipeline``: exactly one of them).
            pipeline: "pipeline_id" or "pipeline_id@version".
            input: the input document.
            priority: 1 (lowest) to 10; 0: the task's or pipeline's.
            request_id: an idempotency key: repeated submits with it make one run (and
                with it, a submit is retried while the scheduler is UNAVAILABLE).
            labels: labels of the run.
            cache: None follows the pipeline's enable_caching; False turns result caching
                off for this run; True on for every step (a task run too).
            run_timeout: the run's time limit in seconds (1 to 30 days; None: none): past
                it an unfinished run ends TIMED_OUT and its running steps are stopped.
            start_delay: start the run this many seconds from now (at most 30 days), as
                Celery's countdown: it is recorded at once and queued then.

        Raises:
            InvalidArgument: the input or a field of the request is not valid.
            NotFound: no such task or pipeline.
            FailedPrecondition: the pipeline is disabled.
        """
        request = requests.submit(
            task, pipeline, input, priority, request_id, labels, cache,
            run_timeout=run_timeout, start_delay=start_delay,
        )  # fmt: skip
        reply = self._s.unary(self._scheduler.SubmitRun, request, retry=bool(request_id))
        return RunInfo.from_proto(reply.run)

    def submit_many(
        self,
        inputs: list[dict[str, Any]],
        task: str = "",
        pipeline: str = "",
        priority: int = 0,
        request_id: str = "",
        labels: dict[str, str] | None = None,
        cache: bool | None = None,
        run_timeout: float | None = None,
        start_delay: float | None = None,
    ) -> tuple[str, list[str]]:
        """Submit one run per input document in one call; returns (batch id, run ids).

        With a ``request_id`` the call is retried while the scheduler is UNAVAILABLE, and a
        retry finds the batch an earlier attempt made (one batch, however often it is
        tried: a reply lost to a broken connection included). Without one, a failed call is
        not retried: the batch may or may not have been made. The id costs the batch its
        runs' MongoDB insert before they are queued (the first of 1,000 runs starts ~0.5 s
        later), which is why the SDK does not make one up."""
        request = requests.submit_many(
            inputs, task, pipeline, priority, request_id, labels, cache, run_timeout, start_delay
        )
        reply = self._s.unary(self._scheduler.SubmitRuns, request, retry=bool(request_id))
        return reply.batch_id, list(reply.run_ids)

    def rerun(
        self, run_id: str, latest: bool = False, request_id: str = "", from_failure: bool = False
    ) -> RunInfo:
        """Run again what run ``run_id`` ran, on the same input (as Flower's retry and
        Hatchet's replay do): a new run of the same task or pipeline version — the latest
        with ``latest`` —, priority, time limit and labels, labelled ``wtm.rerun_of`` with
        ``run_id``; returns it at once. Any run may be run again, finished or not. One call
        (``RerunRun``; a scheduler from before it answers UNIMPLEMENTED).

        ``from_failure`` resumes a run that failed, was cancelled or timed out (Argo's
        retry): its steps that completed are taken over — COMPLETED at once with their
        outputs, ``cached_from`` naming where each was computed — wherever the new run has
        them unchanged (the same task digest and input mapping, and every step they read
        taken over too); only the rest run. With ``latest``, a task fixed since keeps what
        comes before it.

        Raises:
            NotFound: no such run (or no longer that version, unless ``latest``).
            FailedPrecondition: ``from_failure`` of a run that has not ended, completed, or
                whose every step the new run would take over.
        """
        request = requests.rerun(run_id, latest, request_id, from_failure)
        reply = self._s.unary(self._scheduler.RerunRun, request, retry=bool(request_id))
        return RunInfo.from_proto(reply.run)

    def signal(self, run_id: str, step_id: str, payload: dict[str, Any] | None = None) -> RunInfo:
        """Send step ``step_id`` of run ``run_id`` the signal it awaits (its pipeline step's
        ``await_signal``: a person's approval, another system's answer); its task gets
        ``payload`` (a JSON object) as the input field ``await_signal`` names. A signal to a
        step still waiting for its dependencies is kept until it is ready. Returns the run
        after it. Retried while the scheduler is unavailable (or restoring the run): the same
        signal again from the same key is answered as the first was. ``SignalRun``.

        Raises:
            InvalidArgument: ``payload`` is not a JSON object, or is over 64 KiB.
            NotFound: no such run (in the caller's namespace), or no such step in it.
            AlreadyExists: the step has had another signal (a step takes one).
            FailedPrecondition: the run has ended, the step awaits no signal, or it was
                skipped.
        """
        request = requests.signal(run_id, step_id, payload)
        reply = self._s.unary(self._scheduler.SignalRun, request)
        return RunInfo.from_proto(reply.run)

    def signal_runs(
        self,
        step_id: str,
        payload: dict[str, Any] | None = None,
        *,
        batch_id: str = "",
        labels: dict[str, str] | None = None,
        task_id: str = "",
        pipeline_id: str = "",
    ) -> SignaledRuns:
        """Send step ``step_id`` the signal ``payload`` in every unfinished run that matches
        all the filters given — a batch, labels, a task, a pipeline; at least one — as
        Temporal's batch signal: a reviewer approving a whole batch. Each run takes it as
        ``signal`` would give it, or refuses it, saying why (the others go on). Retried
        while the scheduler is unavailable: the runs that took it answer the same again.
        Runs are read from the history (a run submitted meanwhile may be missed).

        Raises:
            InvalidArgument: no filter given, no ``step_id``, or ``payload`` is not a JSON
                object of at most 64 KiB.
        """
        request = requests.signal_runs(step_id, payload, batch_id, labels, task_id, pipeline_id)
        result = SignaledRuns()
        for reply in self._s.pages(self._scheduler.SignalRuns, request):
            requests.add_signaled(result, reply)
        return result

    def resume_runs(
        self,
        *,
        batch_id: str = "",
        labels: dict[str, str] | None = None,
        task_id: str = "",
        pipeline_id: str = "",
        latest: bool = False,
    ) -> ResumedRuns:
        """Resume (``rerun(..., from_failure=True)``) every run that matches all the filters
        given — a batch, labels, a task, a pipeline; at least one — and FAILED, was
        CANCELLED or TIMED_OUT, as Hatchet's bulk replay: each a new run taking over the
        steps its run completed. Each run is resumed once (request id ``resume/<run id>``):
        calling this again, after a cut-short call or to see them, returns the same new
        runs; and a resume that has failed again is resumed in turn (the chain is followed to
        its newest run, which ``resumed`` then names). Runs are read from the history.

        Raises:
            InvalidArgument: no filter given.
        """
        request = requests.resume_runs(batch_id, labels, task_id, pipeline_id, latest)
        result = ResumedRuns()
        for reply in self._s.pages(self._scheduler.ResumeRuns, request):
            requests.add_resumed(result, reply)
        return requests.in_order(result)

    def cancel(self, run_id: str, reason: str = "") -> RunInfo:
        """Cancel a run: queued steps are dropped, running ones stopped. A finished run is
        returned as it is."""
        return RunInfo.from_proto(self._cancel(run_id, reason).run)

    def _cancel(self, run_id: str, reason: str) -> spb.CancelRunResponse:
        request = spb.CancelRunRequest(run_id=run_id, reason=reason)
        return self._s.unary(self._scheduler.CancelRun, request)

    def cancel_runs(
        self,
        reason: str = "",
        *,
        batch_id: str = "",
        labels: dict[str, str] | None = None,
        task_id: str = "",
        pipeline_id: str = "",
    ) -> CancelledRuns:
        """Cancel every unfinished run (queued or running) that matches all the filters
        given — a batch, labels (a schedule's: ``{"wtm.schedule": its id}``), a task, a
        pipeline; at least one, so that nothing cancels every run by mistake. Runs another
        key submitted are left alone unless this key's role may cancel anyone's; they are
        counted in the answer. The scheduler cancels them, up to 500 a call
        (``CancelRuns``), over what the history shows unfinished (a run submitted while
        this goes on may be missed).

        Raises:
            InvalidArgument: no filter given.
        """
        request = requests.cancel_runs(reason, batch_id, labels, task_id, pipeline_id)
        result = CancelledRuns()
        for reply in self._s.pages(self._scheduler.CancelRuns, request):
            requests.add_cancelled(result, reply)
        return result

    def list_runs(
        self,
        state: str = "",
        pipeline_id: str = "",
        task_id: str = "",
        batch_id: str = "",
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 100,
        limit: int | None = None,
        labels: dict[str, str] | None = None,
        awaiting_signal: bool = False,
    ) -> Iterator[RunInfo]:
        """Runs newest first (without step outputs), fetching pages as needed; ``labels``:
        only runs with every one of them (a schedule's: ``{"wtm.schedule": its id}``);
        ``awaiting_signal``: only runs with a step waiting for a signal now (``signal``)."""
        filters = (state, pipeline_id, task_id, batch_id, created_after, created_before)
        seen, token = 0, ""
        while True:
            runs, token = self.list_runs_page(
                *filters,
                page_size=page_size,
                page_token=token,
                labels=labels,
                awaiting_signal=awaiting_signal,
            )
            for r in runs:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield r
            if not token:
                return

    def list_runs_page(
        self,
        state: str = "",
        pipeline_id: str = "",
        task_id: str = "",
        batch_id: str = "",
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 50,
        page_token: str = "",
        labels: dict[str, str] | None = None,
        awaiting_signal: bool = False,
    ) -> tuple[list[RunInfo], str]:
        """One page of runs, newest first, and the token of the next ("" on the last)."""
        request = requests.list_runs(
            state,
            pipeline_id,
            task_id,
            batch_id,
            created_after,
            created_before,
            page_size,
            page_token,
            labels,
            awaiting_signal,
        )
        reply = self._s.unary(self._scheduler.ListRuns, request)
        return [RunInfo.from_proto(r) for r in reply.runs], reply.next_page_token

    def get_run(self, run_id: str, resolve_refs: bool = True) -> RunInfo:
        """A run and its steps. Outputs too large to travel inline are fetched from the
        object store, unless ``resolve_refs`` is false (then they stay reference documents).

        Raises:
            NotFound: no such run in this namespace.
        """
        reply = self._s.unary(self._scheduler.GetRun, spb.GetRunRequest(run_id=run_id))
        run = RunInfo.from_proto(reply.run)
        return self._with_documents(run) if resolve_refs else run

    def _with_documents(self, run: RunInfo) -> RunInfo:
        """``run`` with its outputs that went by reference fetched."""
        if refs.REF_KEY not in repr((run.output, [s.output for s in run.steps])):
            return run
        fetched: dict[str, Any] = {}  # a sink's output is also the run's: fetched once
        return dataclasses.replace(
            run,
            output=self.resolve_refs(run.output, fetched),
            steps=[
                dataclasses.replace(s, output=self.resolve_refs(s.output, fetched))
                for s in run.steps
            ],
        )

    def run(
        self,
        task: str = "",
        pipeline: str = "",
        input: dict[str, Any] | None = None,  # noqa: A002
        priority: int = 0,
        request_id: str = "",
        labels: dict[str, str] | None = None,
        timeout: float = 300.0,
        cache: bool | None = None,
        raise_on_failure: bool | None = None,
        run_timeout: float | None = None,
    ) -> RunInfo:
        """Submit a run and wait for it to finish, in one call (the scheduler answers when
        the run has ended); returns the finished run, large outputs fetched. The arguments
        are ``submit``'s.

        Raises:
            RunFailedError, RunCancelledError, RunTimedOutError: the run ended otherwise
                than COMPLETED (``raise_on_failure=False`` returns it instead).
            WaitTimeoutError: it had not finished within ``timeout`` seconds.
        """
        request = requests.submit(
            task, pipeline, input, priority, request_id, labels, cache, timeout, run_timeout
        )
        reply = self._s.unary(
            self._scheduler.SubmitRun, request, timeout=timeout + 30, retry=bool(request_id)
        )
        run = RunInfo.from_proto(reply.run)
        if not run.finished:
            raise WaitTimeoutError(run.run_id, timeout)
        run = self._with_documents(run)
        return self._outcome(run, raise_on_failure)

    def watch(
        self, run_id: str, after_event_id: str = "", timeout: float | None = None
    ) -> Iterator[RunEventInfo]:
        """The run's events from its start (or after an event id) until it finishes;
        ``timeout`` bounds the whole watch (None: as long as the run takes).

        Raises:
            NotFound: no such run.
            DeadlineExceeded: ``timeout`` passed first.
        """
        request = spb.WatchRunRequest(run_id=run_id, after_event_id=after_event_id)
        for reply in self._s.stream(self._scheduler.WatchRun, request, timeout=timeout):
            yield RunEventInfo.from_proto(reply.event)

    def wait(
        self, run_id: str, timeout: float = 300.0, raise_on_failure: bool | None = None
    ) -> RunInfo:
        """Block until the run finishes and return it. Rides out a scheduler restart: the
        watch is resumed while the scheduler is UNAVAILABLE, until the deadline.

        Raises:
            RunFailedError, RunCancelledError, RunTimedOutError: the run ended otherwise
                than COMPLETED (``raise_on_failure=False`` returns it instead).
            WaitTimeoutError: it had not finished within ``timeout`` seconds (0 or less:
                one look, no wait).
            NotFound: no such run.
        """
        if timeout <= 0:
            run = self.get_run(run_id)
            if not run.finished:
                raise WaitTimeoutError(run_id, timeout)
            return self._outcome(run, raise_on_failure)
        deadline = time.monotonic() + timeout
        retrying = Retrying(
            retry=retry_if_exception_type((Unavailable, DeadlineExceeded, NotFinished)),
            stop=stop_after_delay(timeout),
            wait=wait_exponential(multiplier=0.05, max=1.0),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    left = max(deadline - time.monotonic(), 0.001)
                    for event in self.watch(run_id, timeout=left):
                        if event.ends_run:
                            break
                    run = self.get_run(run_id)
                    if not run.finished:
                        raise NotFinished
        except (Unavailable, DeadlineExceeded, NotFinished):
            raise WaitTimeoutError(run_id, timeout) from None
        return self._outcome(run, raise_on_failure)
