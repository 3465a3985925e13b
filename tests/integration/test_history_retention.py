"""HistoryRetention on the session's nx-27017: finished runs past the retention go, with
their step records and old request ids; unfinished or younger runs stay. And the audit
log's retention and timing, and how a namespace's own settings (its retention among them)
reach every replica."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pymongo
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.common.audit_log import DAY_MS, AuditLog
from services.common.auth import Principal, Role
from services.localstack import Cluster
from services.scheduler import insert_landings
from services.scheduler.clock import FakeClock
from services.scheduler.history_retention import DAY_SECONDS, HistoryRetention
from services.scheduler.insert_landings import InsertLandings
from services.scheduler.namespace_settings import NamespaceSettings

T = TypeVar("T")


def on_a_fresh_database(cluster: Cluster, scenario: Callable[[AsyncDatabase], Awaitable[T]]) -> T:
    """``scenario(db)`` on a database of its own on the session's nx-27017, dropped after."""
    assert cluster.endpoints is not None
    uri = cluster.endpoints.mongodb_uri

    async def main() -> T:
        client: AsyncMongoClient = AsyncMongoClient(uri, tz_aware=True)
        db = client[f"retention_{uuid.uuid4().hex[:8]}"]
        try:
            return await scenario(db)
        finally:
            await client.drop_database(db.name)
            await client.close()

    return asyncio.run(main())


async def ids(db: AsyncDatabase, collection: str) -> set[str]:
    return {d["_id"] async for d in db[collection].find({}, {"_id": 1})}


class CountingMeters(MeterProvider):
    """A meter provider that keeps what its instruments count, for ``counts``."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        super().__init__(metric_readers=[self.reader])


def counts(provider: CountingMeters, name: str) -> dict[tuple[Any, ...], float]:
    """A counter's value per set of attributes, as a Prometheus scrape would read it."""
    data = provider.reader.get_metrics_data()
    found: dict[tuple[Any, ...], float] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found[tuple(sorted((point.attributes or {}).items()))] = point.value
    return found


def days_ago_ms(clock: FakeClock, days: float) -> int:
    return clock.now_ms() - int(days * DAY_SECONDS * 1000)


def test_finished_runs_past_the_retention_go_with_their_steps_and_request_ids(
    cluster: Cluster,
) -> None:
    async def scenario(db: AsyncDatabase) -> tuple[list[int], set[str], set[str], set[str]]:
        clock = FakeClock()
        old, young = days_ago_ms(clock, 8), days_ago_ms(clock, 6)
        runs = [
            *({"_id": f"old-{n}", "state": "COMPLETED", "created_ms": old} for n in range(5)),
            {"_id": "old-failed", "state": "FAILED", "created_ms": old},
            {"_id": "old-running", "state": "RUNNING", "created_ms": old},  # not finished
            {"_id": "young", "state": "COMPLETED", "created_ms": young},
        ]
        await db["runs"].insert_many(runs)
        await db["step_runs"].insert_many(
            [{"_id": f"{r['_id']}:s:1:x", "run_id": r["_id"]} for r in runs]
        )
        then = datetime.fromtimestamp(clock.time(), UTC)
        await db["run_requests"].insert_many(
            [
                {"_id": "k-old", "id": "old-0", "created_at": then - timedelta(days=8)},
                {"_id": "k-young", "id": "young", "created_at": then - timedelta(days=6)},
            ]
        )
        meter = CountingMeters()
        retention = HistoryRetention(
            db, keep_days=7, clock=clock, batch=2, max_batches=2, meter=meter.get_meter("t")
        )
        passes = [await retention.prune(), await retention.prune(), await retention.prune()]
        assert counts(meter, "wtm_history_runs_deleted") == {(): 6}  # the metric says so too
        return (
            passes,
            await ids(db, "runs"),
            await ids(db, "step_runs"),
            await ids(db, "run_requests"),
        )

    passes, runs, steps, requests = on_a_fresh_database(cluster, scenario)
    assert passes == [4, 2, 0]  # two batches of two per pass: what is left goes next pass
    assert runs == {"old-running", "young"}
    assert steps == {"old-running:s:1:x", "young:s:1:x"}
    assert requests == {"k-young"}


def test_a_pass_runs_when_due_on_a_task_of_its_own_then_waits_its_interval(
    cluster: Cluster,
) -> None:
    async def scenario(db: AsyncDatabase) -> tuple[set[str], set[str]]:
        clock = FakeClock()
        old_ms = days_ago_ms(clock, 2)
        await db["runs"].insert_one({"_id": "a", "state": "COMPLETED", "created_ms": old_ms})
        retention = HistoryRetention(db, keep_days=1, clock=clock, first_after=0, every=3600)
        await retention.tick()  # starts the pass and returns: the reaper's tick goes on
        for _ in range(100):
            if not await db["runs"].count_documents({}):
                break
            await asyncio.sleep(0.05)
        first = await ids(db, "runs")
        await db["runs"].insert_one({"_id": "b", "state": "COMPLETED", "created_ms": old_ms})
        await retention.tick()  # not due again for an hour
        await asyncio.sleep(0.3)
        later = await ids(db, "runs")
        await retention.close()
        return first, later

    first, later = on_a_fresh_database(cluster, scenario)
    assert first == set() and later == {"b"}


def test_a_namespace_keeps_its_runs_for_its_own_retention(cluster: Cluster) -> None:
    """WTM_NAMESPACE_RETENTION_DAYS: team-short keeps a day, team-kept for good, the rest
    seven days; request ids stay while any namespace keeps runs for good."""

    async def scenario(db: AsyncDatabase) -> tuple[set[str], set[str]]:
        clock = FakeClock()
        runs: list[dict[str, Any]] = [
            {"_id": f"{ns}-{days}", "namespace": ns, "state": "CANCELLED", "created_ms": t}
            for ns in ("team-short", "team-kept", "default", "team-other")
            for days, t in ((3, days_ago_ms(clock, 3)), (8, days_ago_ms(clock, 8)))
        ]
        await db["runs"].insert_many(runs)
        then = datetime.fromtimestamp(clock.time(), UTC) - timedelta(days=400)
        await db["run_requests"].insert_one({"_id": "k", "id": "x", "created_at": then})
        retention = HistoryRetention(db, 7, {"team-short": 1, "team-kept": 0}, clock=clock)
        await retention.prune()
        return await ids(db, "runs"), await ids(db, "run_requests")

    runs, requests = on_a_fresh_database(cluster, scenario)
    assert runs == {"team-kept-3", "team-kept-8", "default-3", "team-other-3"}
    assert requests == {"k"}  # team-kept's runs stay for good: so do request ids


def test_the_audit_log_keeps_events_for_its_retention(cluster: Cluster) -> None:
    """WTM_AUDIT_RETENTION_DAYS: the audit log's own thread deletes what is older (every
    submit is audited, so the log grows with the work)."""
    assert cluster.endpoints is not None
    client: pymongo.MongoClient = pymongo.MongoClient(cluster.endpoints.mongodb_uri)
    db = client[f"audit_{uuid.uuid4().hex[:8]}"]
    try:
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        db["audit"].insert_many(
            [
                {"method": "SubmitRun", "time_ms": now_ms - 40 * DAY_MS},
                {"method": "CancelRun", "time_ms": now_ms - 20 * DAY_MS},
            ]
        )
        forever, kept = AuditLog(db, keep_days=0), AuditLog(db, keep_days=30)
        assert forever.prune() == 0  # 0: kept for good
        assert kept.prune() == 1
        assert [e["method"] for e in db["audit"].find()] == ["CancelRun"]
        for log in (forever, kept):
            log.close()
    finally:
        with contextlib.suppress(Exception):
            client.drop_database(db.name)
        client.close()


def test_the_audit_log_writes_what_it_holds_when_it_is_closed(cluster: Cluster) -> None:
    """A service's graceful stop closes its audit log: the events of the last calls, which
    linger a fifth of a second to be written together, are written before it returns (the
    thread is a daemon: at the process's exit they were lost with it)."""
    assert cluster.endpoints is not None
    client: pymongo.MongoClient = pymongo.MongoClient(cluster.endpoints.mongodb_uri)
    db = client[f"audit_{uuid.uuid4().hex[:8]}"]
    try:
        audit = AuditLog(db)
        admin = Principal("k1", "admin", Role.ADMIN, "default")
        for method in ("SubmitRun", "CancelRun", "CreateApiKey"):
            audit.record(f"/wtm.v1.SchedulerService/{method}", admin, "OK")
        audit.close()
        assert sorted(e["method"] for e in db["audit"].find()) == [
            "CancelRun", "CreateApiKey", "SubmitRun"
        ]  # fmt: skip
        assert not audit._thread.is_alive()
    finally:
        with contextlib.suppress(Exception):
            client.drop_database(db.name)
        client.close()


def test_the_schedulers_audit_log_writes_as_a_new_runs_insert_lands(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler's audit log waits, before each write, for the next new run's insert to
    land while submits come (``InsertLandings``: nx-27017 applies one command at a time, and
    a submit waits for its insert), and writes at once when none came lately."""
    assert cluster.endpoints is not None
    monkeypatch.setattr(insert_landings, "ACTIVE_S", 30.0)
    client: pymongo.MongoClient = pymongo.MongoClient(cluster.endpoints.mongodb_uri)
    db = client[f"audit_{uuid.uuid4().hex[:8]}"]
    landings = InsertLandings()
    audit = AuditLog(db)
    audit.write_when = functools.partial(landings.next_landing_from_thread, 30.0)
    admin = Principal("k1", "admin", Role.ADMIN, "default")
    try:
        landings.began()  # a submit's insert in flight
        audit.record("/wtm.v1.SchedulerService/SubmitRun", admin, "OK")
        time.sleep(0.8)  # the linger (0.2 s) is over: the write waits for the landing
        held = db["audit"].count_documents({})
        landings.landed()
        for _ in range(100):
            if db["audit"].count_documents({}):
                break
            time.sleep(0.05)
        assert (held, db["audit"].count_documents({})) == (0, 1)
        monkeypatch.setattr(insert_landings, "ACTIVE_S", 0.0)  # no submits lately
        audit.record("/wtm.v1.SchedulerService/CancelRun", admin, "OK")
        audit.close()
        assert db["audit"].count_documents({}) == 2
    finally:
        with contextlib.suppress(Exception):
            client.drop_database(db.name)
        client.close()


def test_a_namespaces_settings_reach_every_replica_over_the_installations(
    cluster: Cluster,
) -> None:
    """Two replicas' ``NamespaceSettings`` on one database (each started with the same
    environment): what one sets through UpdateNamespace the other reads at its next refresh,
    into the very maps the limits, shares and retention hold; a reset returns the
    installation's value, and one never set stays the installation's."""
    operator = Principal("k1", "ops", Role.ADMIN, "*", scope="team-a")

    async def scenario(db: AsyncDatabase) -> list[tuple[Any, ...]]:
        env = dict(run_limit=0, run_limits={"team-a": 50}, weights={"team-b": 2.0})
        one = NamespaceSettings(db, retention_days=30, **env)  # type: ignore[arg-type]
        two = NamespaceSettings(db, retention_days=30, **env)  # type: ignore[arg-type]
        held = two.run_limits  # what RunLimits holds
        seen = []
        await one.update({"run_limit": 5, "weight": 3.0, "history_retention_days": 7}, [], operator)
        await two.refresh()
        seen.append((held["team-a"], two.weight("team-a"), two.retention_days("team-a")))
        await one.update({}, ["run_limit", "history_retention_days"], operator)
        await two.refresh()
        seen.append((held["team-a"], two.weight("team-a"), two.retention_days("team-a")))
        seen.append((two.weight("team-b"), two.run_limit("team-c"), sorted(two.named())))
        return seen

    assert on_a_fresh_database(cluster, scenario) == [
        (5, 3.0, 7),
        (50, 3.0, 30),  # back to WTM_NAMESPACE_RUN_LIMITS and WTM_HISTORY_RETENTION_DAYS
        (2.0, 0, ["team-a", "team-b"]),
    ]
