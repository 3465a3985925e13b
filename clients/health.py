"""Is the installation healthy? One report, for ``wtm health`` and the gateway's
``/api/v1/health``.

Every part gets a line: ``ok``, ``warn`` (it works, but look) or ``fail`` (it is down).

- the registry and the scheduler: do they answer (CheckDependencies);
- their backing servers, as each service finds them: MongoDB and S3 (registry), Redis and
  MongoDB (scheduler); a scheduler whose clock is over a second from Redis's warns;
- the gateway, when there is one to ask (``/healthz``);
- the executors: how many are connected; lost ones and unhealthy slots warn;
- the queues: work waiting on a queue that no connected executor takes from warns (it would
  wait forever), and so does an oldest waiting step older than ``stale_after`` seconds;
- the schedules: one whose last due time could not start its run warns, saying why.

An installation with no executor and nothing waiting is healthy (an autoscaler may have
scaled executors to zero); one whose queues hold work for no executor is warned about.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import asdict, dataclass, field
from typing import Any

from clients.errors import DeadlineExceeded, Unavailable, WtmError
from clients.schedules import ScheduleInfo
from clients.types import (
    DependencyInfo,
    ExecutorInfo,
    ExecutorPauseInfo,
    QueueInfo,
    QueuePauseInfo,
)

OK, WARN, FAIL = "ok", "warn", "fail"
STALE_AFTER_SECONDS = 300.0
CLOCK_OFFSET_WARN_SECONDS = 1.0  # as the scheduler's own warning (clock_watch.py)


@dataclass(frozen=True)
class Check:
    component: str  # "registry", "scheduler/redis", "executors", "queue vision"...
    status: str  # ok | warn | fail
    detail: str


@dataclass
class HealthReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """Nothing is down (warnings allowed)."""
        return all(c.status != FAIL for c in self.checks)

    @property
    def status(self) -> str:
        statuses = {c.status for c in self.checks}
        return FAIL if FAIL in statuses else WARN if WARN in statuses else OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "healthy": self.healthy,
            "checks": [asdict(c) for c in self.checks],
        }


def _failure(exc: BaseException) -> str:
    if isinstance(exc, WtmError):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def assess_service(service: str, found: list[DependencyInfo] | BaseException) -> list[Check]:
    """The service's own line and one per backing server it reported."""
    if isinstance(found, DeadlineExceeded):
        return [Check(service, FAIL, "no answer before the deadline (--timeout)")]
    if isinstance(found, Unavailable):
        return [Check(service, FAIL, f"not answering: {_failure(found)}")]
    if isinstance(found, BaseException):
        return [Check(service, FAIL, f"refused the check: {_failure(found)}")]
    checks = [Check(service, OK, "answering")]
    for d in found:
        latency = f"{d.latency_seconds * 1000:.0f} ms"
        offset = d.clock_offset_seconds
        if d.ok and offset is not None and abs(offset) > CLOCK_OFFSET_WARN_SECONDS:
            checks.append(
                Check(
                    f"{service}/{d.name}",
                    WARN,
                    f"{d.detail} ({latency}), but this replica's clock is {abs(offset):.1f} s "
                    f"{'ahead of' if offset > 0 else 'behind'} Redis's: replicas whose clocks "
                    "differ can run a step twice at once; keep the hosts' clocks in sync (NTP)",
                )
            )
        elif d.ok:
            checks.append(Check(f"{service}/{d.name}", OK, f"{d.detail} ({latency})"))
        else:
            checks.append(Check(f"{service}/{d.name}", FAIL, f"{d.detail} ({latency})"))
    return checks


def paused(kind: str, name: str, pause: ExecutorPauseInfo | QueuePauseInfo, held: str) -> Check:
    """The warning for a paused ``kind`` ("queue", "executor") ``name``: who paused it, why,
    what is held (``held``), and the command that resumes it."""
    why = f" ({pause.reason})" if pause.reason else ""
    return Check(
        f"{kind} {name}",
        WARN,
        f"paused by {pause.paused_by or '?'}{why}: {held} until `wtm {kind} resume {name}`",
    )


def assess_fleet(
    executors: list[ExecutorInfo] | BaseException,
    queues: tuple[list[QueueInfo], int] | BaseException,
    stale_after: float = STALE_AFTER_SECONDS,
) -> list[Check]:
    """Lines for the executors and the queues (nothing when the scheduler did not answer:
    its own line says so)."""
    if isinstance(executors, BaseException) or isinstance(queues, BaseException):
        return []
    waiting, delayed = queues
    work = sum(q.depth for q in waiting)
    return assess_executors(executors, work) + assess_queues(waiting, delayed, stale_after)


def assess_executors(executors: list[ExecutorInfo], work: int) -> list[Check]:
    """The fleet in a line (a warning when none takes the ``work`` steps waiting), the ones
    lost, and a line for each executor paused, resting or failing steps itself."""
    live = [e for e in executors if e.state == "CONNECTED"]
    draining = [e for e in executors if e.state == "DRAINING"]
    lost = [e for e in executors if e.state == "LOST"]
    if live:
        slots = sum(e.slots for e in live)
        busy = sum(min(e.busy_slots, e.slots) for e in live)
        summary = f"{len(live)} connected, {busy}/{slots} slots busy"
        if draining:
            summary += f", {len(draining)} draining"
        checks = [Check("executors", OK, summary)]
    elif work:
        checks = [Check("executors", WARN, f"none connected, and {work} step(s) wait")]
    else:
        checks = [Check("executors", OK, "none connected (nothing waits)")]
    if lost:
        names = ", ".join(e.executor_id for e in lost[:5]) + (" …" if len(lost) > 5 else "")
        checks.append(Check("executors/lost", WARN, f"{len(lost)} lost recently: {names}"))
    for e in live:
        if e.pause is not None:
            checks.append(paused("executor", e.executor_id, e.pause, "given no new step"))
    for e in live + draining:
        if e.resting() and e.resting_until is not None:
            checks.append(
                Check(
                    f"executor {e.executor_id}",
                    WARN,
                    f"resting until {e.resting_until:%H:%M:%S} UTC: steps kept failing in the "
                    f"executor itself ({e.slot_errors} so far); last: "
                    f"{e.last_slot_error or '?'}; `wtm executor resume {e.executor_id}` ends it",
                )
            )
        elif e.slot_errors:
            checks.append(
                Check(
                    f"executor {e.executor_id}",
                    WARN,
                    f"{e.slot_errors} step(s) failed in the executor itself; last: "
                    f"{e.last_slot_error or '?'}",
                )
            )
    return checks


def assess_queues(waiting: list[QueueInfo], delayed: int, stale_after: float) -> list[Check]:
    """A line for each queue paused, stranded (work and no executor) or slow to start its
    oldest step, then the queues in a line: what waits and what is held back."""
    checks = []
    for q in waiting:
        if q.pause is not None:
            checks.append(paused("queue", q.queue, q.pause, f"{q.depth} step(s) wait"))
        elif q.stranded:
            checks.append(
                Check(
                    f"queue {q.queue}",
                    WARN,
                    f"{q.depth} step(s) wait and no connected executor takes from it "
                    f"(oldest {q.oldest_age_seconds:.0f}s): start an executor with "
                    f"--queues {q.queue.rpartition('/')[2].partition('|')[0]}",
                )
            )
        elif q.depth and q.oldest_age_seconds > stale_after:
            checks.append(
                Check(
                    f"queue {q.queue}",
                    WARN,
                    f"the oldest of {q.depth} waiting step(s) has waited "
                    f"{q.oldest_age_seconds:.0f}s ({q.executors} executor(s), "
                    f"{q.free_slots} free slot(s))",
                )
            )
    work = sum(q.depth for q in waiting)
    if work or delayed:
        said = f"{work} step(s) waiting, {delayed} held back (retries, start times, limits)"
        checks.append(Check("queues", OK, said))
    else:
        checks.append(Check("queues", OK, "nothing waiting"))
    return checks


async def _settled(coro: Any) -> Any:
    try:
        return await coro
    except Exception as exc:  # noqa: BLE001 - a part that fails is what the report says
        return exc


async def check_gateway(url: str, ca: str = "", timeout: float = 3.0) -> Check:
    """The gateway's liveness endpoint."""
    import httpx

    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
    try:
        async with httpx.AsyncClient(verify=verify, timeout=timeout) as http:
            reply = await http.get(url.rstrip("/") + "/healthz")
        if reply.status_code == 200:
            return Check("gateway", OK, f"answering at {url}")
        return Check("gateway", FAIL, f"{url}/healthz answered HTTP {reply.status_code}")
    except Exception as exc:  # noqa: BLE001
        return Check("gateway", FAIL, f"not answering at {url}: {_failure(exc)}")


async def check_health(
    client: Any,  # clients.aio.AsyncClient
    gateway_url: str = "",
    ca: str = "",
    stale_after: float = STALE_AFTER_SECONDS,
    gateway_check: Check | None = None,
) -> HealthReport:
    """Ask every part at once; ``gateway_check`` is given by the gateway itself (it is
    answering: it is the one asking)."""
    registry, scheduler, executors, queues, schedules = await asyncio.gather(
        _settled(client.check_dependencies("registry")),
        _settled(client.check_dependencies("scheduler")),
        _settled(client.list_executors()),
        _settled(client.list_queues()),
        _settled(client.list_schedules()),
    )
    checks = assess_service("registry", registry) + assess_service("scheduler", scheduler)
    if gateway_check is not None:
        checks.append(gateway_check)
    elif gateway_url:
        checks.append(await check_gateway(gateway_url, ca))
    checks += assess_fleet(executors, queues, stale_after)
    if not isinstance(schedules, Exception):  # else the scheduler's own line says why
        checks += assess_schedules(schedules)
    return HealthReport(checks)


def assess_schedules(schedules: list[ScheduleInfo]) -> list[Check]:
    """A schedule whose last due time started no run, because it could not, warns."""
    return [
        Check(
            f"schedule {s.schedule_id}",
            WARN,
            f"its last time started no run: {s.last_error} (it tries again at each time)",
        )
        for s in schedules
        if s.last_error and not s.paused
    ]
