"""The artifact sweep against the session's stack: artifacts that no kept run, step record,
unfinished run or pipeline names go from SeaweedFS through the registry's DeleteArtifacts;
named, young or kept-for-good ones stay. The runs are recorded by the session's real
scheduler (which writes the digests each record names); the sweep runs with a clock 40 days
ahead, on namespaces of this test only (every other namespace keeps its files for good
here), so no other test's files are touched."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from clients.errors import InvalidArgument, NotFound
from clients.sdk import Client
from common import refs
from common.artifacts import parse_uri
from services.localstack import Cluster
from services.scheduler.artifact_sweep import (
    CLAIM,
    DAY_MS,
    ArtifactSweep,
    StoredArtifact,
)
from services.scheduler.clock import FakeClock
from services.scheduler.registry_artifacts import RegistryArtifacts
from tests.conftest import run_cli
from tests.integration.test_history_retention import CountingMeters, counts, on_a_fresh_database
from tests.waiting import eventually

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
NO_DB = defaultdict(lambda: None)  # the parts of the sweep tested alone read no records
LARGE = 100_000  # sequence's output for this n is ~590 KB: it goes by reference


def in_namespace(cluster: Cluster, namespace: str) -> Client:
    return Client(
        cluster.registry_address,
        cluster.scheduler_address,
        api_key=cluster.admin_key,
        namespace=namespace,
        tls_ca=str(cluster.ca_file),
    )


def test_the_sweep_deletes_only_what_nothing_kept_names(cluster: Cluster) -> None:
    team, kept_team, slow_team = (f"sweep-{x}-{uuid.uuid4().hex[:6]}" for x in "akl")
    a, kept, slow = (in_namespace(cluster, ns) for ns in (team, kept_team, slow_team))
    try:
        for c in (a, kept, slow):
            c.register_task(FIXTURES / "echo")
            c.register_task(FIXTURES / "sequence")

        def upload(c: Client, text: str) -> str:
            return c.upload_artifact_data(f"{text}.txt", f"{text} {uuid.uuid4()}".encode())

        by_run, unnamed, by_pipeline = (upload(a, t) for t in ("by-run", "unnamed", "pipe"))
        in_kept_namespace, in_slow_namespace = upload(kept, "kept"), upload(slow, "slow")
        a.register_pipelines(
            {
                "pipeline_id": "with_a_constant",
                "steps": [{"task_id": "echo", "input_mapping": {"model": by_pipeline}}],
            }
        )
        run = a.wait(a.submit(task="echo", input={"image": by_run}).run_id, timeout=60)
        assert run.state == "COMPLETED", run.error
        large = a.wait(a.submit(task="sequence", input={"n": LARGE}).run_id, timeout=60)
        assert large.state == "COMPLETED", large.error
        by_step = refs.ref_uri(a.get_run(large.run_id, resolve_refs=False).steps[0].output)
        assert by_step is not None  # the executor stored the output as an artifact
        eventually(  # the step record is written behind the run's end
            lambda: step_record_names(cluster, large.run_id, parse_uri(by_step)[0]),
            timeout=10,
            what="the step record naming its output's artifact",
        )

        namespaces = (team, kept_team, slow_team)
        meter = CountingMeters()
        # WTM_ARTIFACT_SWEEP=dry-run: it says what it would delete, and deletes nothing.
        dry = sweep_as_if_40_days_on(cluster, *namespaces, mode="dry-run", meter=meter)
        assert asyncio.run(dry) == 1
        assert a.download_artifact(unnamed)
        assert counts(meter, "wtm_artifacts_deleted") == {}
        assert asyncio.run(sweep_as_if_40_days_on(cluster, *namespaces, meter=meter)) == 1
        assert counts(meter, "wtm_artifacts_deleted") == {(("namespace", team),): 1}
        with pytest.raises(NotFound):
            a.download_artifact(unnamed)
        for c, uri in (
            (a, by_run),
            (a, by_pipeline),
            (a, by_step),
            (kept, in_kept_namespace),
            (slow, in_slow_namespace),
        ):
            assert c.download_artifact(uri), uri
        listed = {x.digest for x in a.list_artifacts()}
        assert parse_uri(unnamed)[0] not in listed and parse_uri(by_run)[0] in listed
    finally:
        for c in (a, kept, slow):
            c.close()


def step_record_names(cluster: Cluster, run_id: str, digest: str) -> bool:
    async def main() -> bool:
        assert cluster.endpoints is not None
        client: AsyncMongoClient = AsyncMongoClient(cluster.endpoints.mongodb_uri)
        try:
            doc = await client["wtm"]["step_runs"].find_one({"run_id": run_id})
            return bool(doc) and digest in doc.get("artifacts", [])
        finally:
            await client.close()

    return asyncio.run(main())


async def sweep_as_if_40_days_on(
    cluster: Cluster,
    team: str,
    kept: str,
    slow: str,
    mode: str = "on",
    meter: MeterProvider | None = None,
) -> int:
    assert cluster.endpoints is not None
    mongo: AsyncMongoClient = AsyncMongoClient(cluster.endpoints.mongodb_uri)
    redis = Redis.from_url(cluster.endpoints.redis_url)
    index = RegistryArtifacts(
        cluster.registry_address,
        cluster.key_files["service"].read_text(),  # the scheduler's own key
        str(cluster.ca_file),
    )
    clock = FakeClock(time.time() + 40 * 86_400)
    sweep = ArtifactSweep(
        mongo["wtm"],
        index,
        redis,
        "test",
        clock=clock,
        mode=mode,
        meter=meter.get_meter("t") if meter else None,
    )
    try:
        await sweep.start()  # the session's scheduler noted ``since`` at its start
        assert sweep.since_ms <= int(time.time() * 1000)
        # Every other namespace keeps its files for good (0); this test's: 30 days, 0, 60.
        return await sweep.sweep(0, {team: 30, kept: 0, slow: 60})
    finally:
        await index.close()
        await redis.aclose()
        await mongo.close()


def test_one_replica_claims_the_days_sweep(cluster: Cluster) -> None:
    async def main() -> tuple[bool, bool]:
        assert cluster.endpoints is not None
        redis = Redis.from_url(cluster.endpoints.redis_url)
        try:
            sweeps = [ArtifactSweep(NO_DB, None, redis, r) for r in ("r1", "r2")]  # type: ignore[arg-type]
            await redis.delete(CLAIM)
            first, second = [await s.claim() for s in sweeps]
            ttl = await redis.ttl(CLAIM)
            assert 86_000 < ttl <= 86_400
            return first, second
        finally:
            await redis.aclose()

    assert asyncio.run(main()) == (True, False)


class ListedOnly:
    """An index of given artifacts, for the candidate rule alone."""

    def __init__(self, *stored: StoredArtifact) -> None:
        self.stored = stored

    async def artifacts(self) -> AsyncIterator[StoredArtifact]:
        for a in self.stored:
            yield a


def test_files_stored_before_names_were_recorded_wait_out_a_retention() -> None:
    """Runs recorded before the scheduler wrote ``artifacts`` name their files only in their
    text: a file stored before then goes only once a retention has passed since. And no
    file goes inside two days of being stored, whatever the retention."""
    clock = FakeClock()
    now = clock.now_ms()
    a = StoredArtifact("team", "a" * 64, now - 50 * DAY_MS)
    b = StoredArtifact("team", "b" * 64, now - 1 * DAY_MS)
    c = StoredArtifact("team", "c" * 64, now - 5 * DAY_MS)
    sweep = ArtifactSweep(NO_DB, ListedOnly(a, b, c), None, "r", clock)  # type: ignore[arg-type]

    def candidates(since_days_ago: float, keep: float) -> str:
        sweep.since_ms = now - int(since_days_ago * DAY_MS)
        found = asyncio.run(sweep.candidates(keep, {}))
        return "".join(sorted(d[0] for d in found.get("team", [])))

    assert candidates(since_days_ago=10, keep=3) == "ac"
    assert candidates(since_days_ago=10, keep=20) == ""  # runs from before may name "a"
    assert candidates(since_days_ago=25, keep=20) == "a"
    assert candidates(since_days_ago=25, keep=0) == ""  # kept for good
    assert candidates(since_days_ago=10, keep=0.5) == "ac"  # "b": inside the 2-day floor


def test_delete_refuses_what_is_not_a_digest(client: Client) -> None:
    with pytest.raises(InvalidArgument) as err:
        client.delete_artifacts(["not-a-digest"])
    assert err.value.field == "digests[0]"
    with pytest.raises(InvalidArgument) as err:
        client.delete_artifacts([])
    assert err.value.field == "digests"
    # A digest that is not stored is no error: a sweep cut short can run again.
    assert client.delete_artifacts(["0" * 64]) == ["0" * 64]


def test_what_names_a_file(cluster: Cluster) -> None:
    """On a database of its own: the digests records carry, an unfinished run's input text
    (a run recorded before records carried them), a schedule's input (its next runs'), and
    the pipelines' constant inputs."""

    class Pipelines(ListedOnly):
        async def pipeline_texts(self, namespace: str) -> AsyncIterator[str]:
            yield '{"model": "artifact://sha256/' + "d" * 64 + '/m.onnx"}'

    def uri(ch: str) -> str:
        return f"artifact://sha256/{ch * 64}/f.png"

    async def scenario(db: AsyncDatabase) -> set[str]:
        await db["runs"].insert_many(
            [
                {"_id": "new", "state": "COMPLETED", "artifacts": ["a" * 64]},
                {"_id": "old-queued", "state": "QUEUED", "input_json": f'{{"x": "{uri("b")}"}}'},
                {"_id": "old-done", "state": "COMPLETED", "input_json": f'{{"x": "{uri("e")}"}}'},
            ]
        )
        await db["step_runs"].insert_one({"_id": "s", "artifacts": ["c" * 64]})
        await db["schedules"].insert_one({"_id": "t/s", "input_json": f'{{"x": "{uri("f")}"}}'})
        sweep = ArtifactSweep(db, Pipelines(), None, "r")  # type: ignore[arg-type]
        return {d[0] for d in await sweep.named(["team"])}

    # "e": a finished run from before; the files it names wait out a retention instead.
    assert on_a_fresh_database(cluster, scenario) == {"a", "b", "c", "d", "f"}


def test_an_admin_uploads_lists_downloads_and_deletes_artifacts_with_the_cli(
    cluster: Cluster, tmp_path: Path
) -> None:
    namespace = f"cli-art-{uuid.uuid4().hex[:6]}"
    with in_namespace(cluster, namespace) as c:
        (tmp_path / "note.txt").write_bytes(b"delete me")
        up = run_cli(
            cluster, "--json", "-n", namespace, "artifact", "upload", str(tmp_path / "note.txt")
        )
        uri = json.loads(up.stdout)["uri"]
        digest = parse_uri(uri)[0]
        assert uri.endswith("/note.txt")
        (tmp_path / "here").mkdir()
        run_cli(cluster, "-n", namespace, "artifact", "download", uri, cwd=tmp_path / "here")
        assert (tmp_path / "here" / "note.txt").read_bytes() == b"delete me"  # its URI's name
        got = tmp_path / "copy.bin"
        run_cli(cluster, "-n", namespace, "artifact", "download", uri, "-o", str(got))
        assert got.read_bytes() == b"delete me"
        listed = json.loads(run_cli(cluster, "--json", "-n", namespace, "artifact", "list").stdout)
        assert [(a["digest"], a["size_bytes"]) for a in listed["artifacts"]] == [(digest, 9)]
        table = run_cli(cluster, "-n", namespace, "artifact", "list").stdout
        assert digest in table and "Artifacts (1)" in table
        run_cli(cluster, "-n", namespace, "artifact", "delete", uri)
        with pytest.raises(NotFound):
            c.download_artifact(uri)
        assert c.list_artifacts() == []
