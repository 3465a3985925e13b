"""``Reaper``: the once-a-second safety net. Each tick, separately (one failing does not
stop the others):
- expire leases whose executor went silent (the attempt fails or is retried);
- promote retries that are due back onto their queues;
- write this replica's part of the fleet record;
- pick up queue variants other replicas announced;
- read queue depths and ages for the metrics;
- read each namespace's runs queued or running, for the metrics and ``RunLimits``;
- and what is added with ``also`` (the namespaces' fair shares, written again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from services.common import logs
from services.scheduler.fleet import Fleet
from services.scheduler.leasing import Leaser
from services.scheduler.listeners import Listeners
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.queue_records import flat_dict
from services.scheduler.run_limits import RunLimits
from services.scheduler.run_queue import RunQueue

log = logging.getLogger(__name__)


class Reaper:
    def __init__(
        self,
        queue: RunQueue,
        fleet: Fleet,
        leaser: Leaser,
        listeners: Listeners,
        metrics: SchedulerMetrics,
    ) -> None:
        self.queue = queue
        self.fleet = fleet
        self.leaser = leaser
        self.listeners = listeners
        self.metrics = metrics
        self.duties: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("expire leases", self.expire_leases),
            ("promote due retries", self.promote_due),
            ("time out runs past their deadline", self.time_out_runs),
            ("time out waits for signals", self.expire_signals),
            ("save the fleet record", self.fleet.save),
            ("refresh queue variants", self.refresh_queue_variants),
            ("read queue depths", self.read_depths),
            ("count unfinished runs", self.count_runs),
        ]
        self.limits: RunLimits | None = None  # told the counts (``keep_counting``)

    def also(self, name: str, duty: Callable[[], Awaitable[None]]) -> None:
        """One more duty, each tick after the others."""
        self.duties.append((name, duty))

    def keep_counting(self, limits: RunLimits) -> None:
        """Tell ``limits`` each namespace's unfinished runs every tick."""
        self.limits = limits

    async def count_runs(self) -> None:
        counts = await self.queue.reader.unfinished_counts()
        self.metrics.namespace_runs = counts
        if self.limits is not None:
            self.limits.seen(counts)

    async def run(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.tick()

    async def tick(self) -> None:
        for name, duty in self.duties:
            try:
                await duty()
            except Exception:
                log.exception("reaper: %s failed", name)

    async def expire_leases(self) -> None:
        for expired in await self.queue.expire_leases():
            member = expired["member"]
            run_id, _, step_id = member.partition(":")
            log.warning(
                "lease expired: %s (%s)",
                member,
                expired["verdict"],
                extra=logs.run_fields(run_id, step_id),
            )
            self.listeners.lease_expired(member)
            if expired["verdict"] == "released":  # no heartbeat named it: not counted
                # Its slot here is free again; should the executor have it after all, it
                # stops it (the attempt is no longer current).
                lost = "lease expired before the executor said it had the step"
                self.fleet.send_cancels([(member, expired["executor"])], reason=lost)
            else:
                self.fleet.send_cancels(list(flat_dict(expired["cancel"]).items()))
            # Recorded like any attempt: it may have run (an executor frozen at once).
            self.listeners.step_ended(
                member, flat_dict(expired["snapshot"]), "", expired["verdict"] == "failed"
            )
            self.leaser.wake()

    async def time_out_runs(self) -> None:
        ended, running = await self.queue.time_out_runs()
        if running:
            self.fleet.send_cancels(running, reason="run timed out: its run_timeout passed")
        for run_id in ended:
            log.info("run %s timed out (its run_timeout)", run_id, extra=logs.run_fields(run_id))
            self.listeners.run_ended(run_id, None)
        if ended:
            self.leaser.wake()  # their places are free

    async def expire_signals(self) -> None:
        """End the runs of steps whose wait for a signal ran out (their await_signal's
        timeout_seconds): the step and its run TIMED_OUT; or, with on_timeout "continue",
        the step queued without one."""
        for ended in await self.queue.expire_signals():
            run_id, _, step_id = ended["member"].partition(":")
            if "queued" in ended:  # on_timeout "continue": queued (the queue woke the lease loop)
                log.info(
                    "no signal came for %s in time: it runs without one", ended["member"],
                    extra=logs.run_fields(run_id, step_id),
                )  # fmt: skip
                continue
            log.info(
                "no signal came for %s in time", ended["member"],
                extra=logs.run_fields(run_id, step_id),
            )  # fmt: skip
            cancel = list(flat_dict(ended["cancel"]).items())
            self.fleet.send_cancels(cancel, reason=f"run timed out: step {step_id} got no signal")
            self.listeners.run_ended(run_id, None)
            self.leaser.wake()

    async def promote_due(self) -> None:
        if await self.queue.promote_due():
            self.leaser.wake()
        self.leaser.due.take(self.queue.clock.now_ms())  # the next one, if any, on time

    async def refresh_queue_variants(self) -> None:
        before = len(self.queue.queue_variants)
        if len(await self.queue.refresh_queue_variants()) != before:
            self.queue.work_was_queued()  # a new labelled queue: executors may match it

    async def read_depths(self) -> None:
        queues = self.fleet.watched_queues()
        stats = await self.queue.queue_stats(queues)
        delayed = await self.queue.reader.delayed_count()
        serving = self.fleet.executors_per_queue(queues)
        self.metrics.set_queues(
            stats, delayed, self.queue.clock.now_ms(), serving, self.fleet.paused
        )
        self.metrics.awaiting_signal = await self.queue.reader.awaiting_signals()
