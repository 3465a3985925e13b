"""The scheduler's metrics (OpenTelemetry instruments; no-ops unless a reader is set up).

    wtm_queue_depth{queue}                 steps waiting per queue (plus "delayed": held back)
    wtm_steps_awaiting_signal              steps waiting for a signal (their await_signal)
    wtm_queue_oldest_age_seconds{queue}    how long the oldest waiting step has waited (0: none)
    wtm_queue_executors{queue}             executors on this replica that take from the queue
    wtm_queue_paused{queue}                1 while an operator holds the queue (PauseQueue), else
                                           0: autoscalers and alerts leave paused queues out
    wtm_namespace_unfinished_runs{namespace}  runs queued or running (WTM_MAX_UNFINISHED_RUNS)
    wtm_scheduler_clock_offset_seconds     this replica's clock minus Redis's (clock_watch.py)
    wtm_runs_submitted_total               runs accepted
    wtm_runs_finished_total{state}         runs ended, by final state
    wtm_step_attempts_total{state,task}    step attempts ended, by outcome
    wtm_step_duration_seconds{task}        lease to result, per attempt
    wtm_dispatch_latency_seconds           queued to leased, per attempt
    wtm_executor_slots{state=busy|free}    over the executors connected to this replica
    wtm_lease_expiries_total               attempts lost with their executor
    wtm_retries_total                      attempts that will be retried
    wtm_history_write_failures_total       failed writes of finished runs to MongoDB (retried)
    wtm_result_cache_lookups_total{outcome=hit|miss}  result-cache lookups of cacheable steps
    wtm_history_runs_deleted_total         finished runs deleted past their retention
                                           (history_retention.py)
    wtm_artifacts_deleted_total{namespace} artifacts the daily sweep deleted (artifact_sweep.py)
    wtm_calls_refused_total{namespace}     calls refused for the namespace's calls a second
                                           (services/common/call_limits.py)

Every replica reports the depths and ages (the same figures: take the max over replicas) and
the executors connected to it (sum over replicas).

Queue depths and ages are read from Redis by the reaper once a second and kept for the
callbacks (which must not block).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from services.scheduler.listeners import RunListener
from services.scheduler.queue_names import held_by

if TYPE_CHECKING:
    from services.scheduler.fleet import Fleet
    from services.scheduler.models import Run
    from services.scheduler.result_cache import ResultCache


# Histogram buckets in seconds, from 1 ms to 1 h (OpenTelemetry's default buckets are
# milliseconds' 0, 5, 10 ... 10000: every step would land under 5 "seconds").
SECONDS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip


class SchedulerMetrics(RunListener):
    """Instruments, and what the observable ones read; a listener of runs and attempts."""

    def __init__(self, fleet: Fleet, cache: ResultCache | None = None) -> None:
        self._fleet = fleet
        self._cache = cache
        self.depths: dict[str, int] = {}
        self.oldest_ages: dict[str, float] = {}
        self.executors: dict[str, int] = {}
        self.paused: dict[str, int] = {}  # queue -> 1 while paused, 0 otherwise
        self.namespace_runs: dict[str, int] = {}
        self.clock_offset: float | None = None
        self.awaiting_signal = 0  # steps waiting for a signal (read by the reaper)
        meter = metrics.get_meter("wtm.scheduler")
        meter.create_observable_gauge(
            "wtm_scheduler_clock_offset",
            [self._observe_clock_offset],
            unit="s",
            description="this replica's clock minus Redis's",
        )
        meter.create_observable_gauge(
            "wtm_queue_depth", [self._observe_depths], description="steps waiting per queue"
        )
        meter.create_observable_gauge(
            "wtm_queue_oldest_age",
            [self._observe_ages],
            unit="s",
            description="how long the oldest waiting step has waited",
        )
        meter.create_observable_gauge(
            "wtm_queue_executors",
            [self._observe_executors],
            description="executors on this replica that take from the queue",
        )
        meter.create_observable_gauge(
            "wtm_queue_paused",
            [self._observe_paused],
            description="1 while an operator holds the queue (PauseQueue)",
        )
        meter.create_observable_gauge(
            "wtm_executor_slots", [self._observe_slots], description="executor slots by state"
        )
        meter.create_observable_gauge(
            "wtm_executors_resting",
            [self._observe_resting],
            description="executors on this replica resting: steps kept failing in them",
        )
        meter.create_observable_gauge(
            "wtm_steps_awaiting_signal",
            [lambda _: [Observation(self.awaiting_signal)]],
            description="steps waiting for a signal (await_signal): a person's or a system's",
        )
        meter.create_observable_gauge(
            "wtm_namespace_unfinished_runs",
            [self._observe_namespace_runs],
            description="runs queued or running per namespace",
        )
        self.runs_submitted_total = meter.create_counter("wtm_runs_submitted", description="runs")
        self.runs_finished = meter.create_counter("wtm_runs_finished", description="runs")
        self.attempts = meter.create_counter("wtm_step_attempts", description="attempts")
        self.step_duration = meter.create_histogram(
            "wtm_step_duration",
            unit="s",
            description="lease to result, per attempt",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self.dispatch_latency = meter.create_histogram(
            "wtm_dispatch_latency",
            unit="s",
            description="queued to leased, per attempt",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self.lease_expiries = meter.create_counter("wtm_lease_expiries", description="attempts")
        self.retries = meter.create_counter("wtm_retries", description="attempts")
        meter.create_observable_counter(
            "wtm_result_cache_lookups",
            [self._observe_cache],
            description="result-cache lookups of cacheable steps, by outcome",
        )
        self.history_failures = meter.create_counter(
            "wtm_history_write_failures", description="failed writes of finished runs"
        )

    def _observe_clock_offset(self, options: CallbackOptions) -> Iterable[Observation]:
        return [] if self.clock_offset is None else [Observation(self.clock_offset)]

    def _observe_namespace_runs(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"namespace": ns}) for ns, n in self.namespace_runs.items()]

    def _observe_depths(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"queue": q}) for q, n in self.depths.items()]

    def _observe_ages(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(a, {"queue": q}) for q, a in self.oldest_ages.items()]

    def _observe_executors(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"queue": q}) for q, n in self.executors.items()]

    def _observe_paused(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"queue": q}) for q, n in self.paused.items()]

    def _observe_cache(self, options: CallbackOptions) -> Iterable[Observation]:
        if self._cache is None:
            return []
        return [
            Observation(self._cache.hits, {"outcome": "hit"}),
            Observation(self._cache.misses, {"outcome": "miss"}),
        ]

    def _observe_slots(self, options: CallbackOptions) -> Iterable[Observation]:
        sessions = list(self._fleet.sessions.values())
        busy = sum(min(s.slots_taken, s.profile.slots) for s in sessions)  # not prefetched
        total = sum(s.profile.slots for s in sessions)
        return [Observation(busy, {"state": "busy"}), Observation(total - busy, {"state": "free"})]

    def _observe_resting(self, options: CallbackOptions) -> Iterable[Observation]:
        sessions = list(self._fleet.sessions.values())
        now = self._fleet.clock.time() if sessions else 0.0
        return [Observation(sum(1 for s in sessions if s.resting_until > now))]

    def attempt_ended(self, member: str, snapshot: dict[str, str], output_json: str) -> None:
        state = snapshot.get("state", "")
        task = snapshot.get("task_id", "")
        if state == "QUEUED":  # failed, will be retried
            self.retries.add(1, {"task": task})
            state = "FAILED"
        self.attempts.add(1, {"state": state, "task": task})
        queued, started, ended = (
            int(snapshot.get(k) or 0) for k in ("queued_ms", "started_ms", "ended_ms")
        )
        if started and ended >= started:
            self.step_duration.record((ended - started) / 1000, {"task": task})
        if queued and started >= queued:
            self.dispatch_latency.record((started - queued) / 1000)

    def run_recorded(self, run: Run, fields: dict[str, str]) -> None:
        self.runs_finished.add(1, {"state": run.state})

    def runs_submitted(self, count: int) -> None:
        self.runs_submitted_total.add(count)

    def lease_expired(self, member: str) -> None:
        self.lease_expiries.add(1)

    def history_write_failed(self) -> None:
        self.history_failures.add(1)

    def set_queues(
        self,
        stats: dict[str, tuple[int, int | None]],
        delayed: int,
        now_ms: int,
        executors: dict[str, int],
        paused: frozenset[str] = frozenset(),
    ) -> None:
        """What the reaper read: per queue (depth, oldest enqueue ms), the delayed retries,
        the executors here per queue, and the queues paused (each reported, work or not)."""
        self.depths = {q: depth for q, (depth, _) in stats.items()} | {"delayed": delayed}
        self.oldest_ages = {
            q: max(0.0, (now_ms - oldest) / 1000) if oldest is not None else 0.0
            for q, (_, oldest) in stats.items()
        }
        self.executors = {q: executors.get(q, 0) for q in stats}
        self.paused = {q: int(held_by(q, paused) is not None) for q in stats} | dict.fromkeys(
            paused, 1
        )
