"""``RunQueue``: the scheduler's hot state in Redis, changed only through the Lua scripts."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from services.common import auth
from services.scheduler import keys, queue_names
from services.scheduler.clock import SYSTEM, Clock

LUA_DIR = Path(__file__).parent / "lua"
SCRIPTS = (
    "submit_run",
    "dispatch",
    "complete",
    "heartbeat",
    "expire_leases",
    "promote_due",
    "cancel_run",
)
IDEMPOTENCY_TTL_S = 24 * 3600
Call = tuple[str, list[Any]]  # a script's name and its arguments (after the key prefix)
Command = tuple[Any, ...]  # a Redis command and its arguments


class RunSnapshot(NamedTuple):
    """A run as Redis holds it at one moment."""

    run: dict[str, str]  # the run hash
    steps: list[dict[str, str]]  # its step hashes, in pipeline order
    outputs: dict[str, str]  # step id -> output JSON, of the steps that completed


def now_ms() -> int:
    """The system clock in ms (for callers without a clock of their own)."""
    return SYSTEM.now_ms()


@dataclass(frozen=True)
class QueuedStep:
    """One step as submitted: its id, dependencies and the flat fields of its Redis hash."""

    step_id: str
    deps: list[str]
    dependents: list[str]
    fields: dict[str, str]


@dataclass(frozen=True)
class Leased:
    """A step attempt that dispatch leased to an executor."""

    member: str
    run_id: str
    step_id: str
    attempt: int
    step: dict[str, str]
    run_input_json: str
    dep_outputs: dict[str, str]
    trace_id: str = ""  # the run's trace, when it is traced
    run_span: str = ""
    upstream_spans: dict[str, str] = field(default_factory=dict)  # step read -> its span id
    run_started: bool = False  # this lease made the run RUNNING


@dataclass(frozen=True)
class Submission:
    """A run to create in Redis (or to rebuild: steps may carry their output already)."""

    run_id: str
    run_fields: dict[str, str]
    steps: list[QueuedStep]
    request_id: str = ""
    done: dict[str, str] = field(default_factory=dict)  # step id -> output JSON (rebuild)
    attempts: dict[str, int] = field(default_factory=dict)  # step id -> attempts so far
    # Rebuild: steps ready to run wait until then (ms), so that executions of the lost state
    # still running somewhere are stopped (their leases can no longer be renewed) first.
    not_before_ms: int = 0


@dataclass(frozen=True)
class Completion:
    """The end of a step attempt, to record."""

    member: str
    attempt: int
    outcome: str  # SUCCEEDED | FAILED | FATAL | TIMED_OUT | CANCELLED | RELEASED
    output_json: str = ""
    error: str = ""
    retry_at_ms: int = 0
    timings: dict[str, int] = field(default_factory=dict)
    lease: str = ""  # the dispatch it is for ("" from executors that do not echo it)
    executor: str = ""  # who reports it ("": not checked)


@dataclass(frozen=True)
class Verdict:
    """What the scheduler decided about a result: the verdict, the attempts to cancel, and
    the step's hash right after the change (empty when the result was stale)."""

    verdict: str
    cancel: list[tuple[str, str]]  # (step-key, executor id)
    snapshot: dict[str, str] = field(default_factory=dict)
    final: RunSnapshot | None = None  # the whole run, when this result ended it

    @property
    def ends_run(self) -> bool:
        return self.verdict in {"run_completed", "failed"}


def _text(mapping: Any) -> dict[str, str]:
    """A Redis reply mapping of bytes to bytes, as text."""
    return {k.decode(): v.decode() for k, v in mapping.items()}


def _pairs(flat: list[str]) -> list[tuple[str, str]]:
    return list(zip(flat[0::2], flat[1::2], strict=True))


SCRIPT_CONNECTION_NAME = "wtm-scheduler-scripts"  # how the line shows in CLIENT LIST


class ScriptConnection:
    """A Redis connection of the queue's own, for script pipelines: redis-py's connection
    read and written directly. A pooled pipeline costs ~300 µs of CPU per round trip here
    (pipeline object, pool checkout, a task per socket timeout), this ~160 µs. One round
    trip at a time; the whole of it has one deadline, and any error or cancel mid-way drops
    the connection, so a half-read reply never reaches the next call."""

    def __init__(self, client: aioredis.Redis, timeout_s: float = 30.0) -> None:
        pool = client.connection_pool
        options = {
            **pool.connection_kwargs,
            "socket_timeout": None,
            "client_name": SCRIPT_CONNECTION_NAME,
        }
        self._connection = pool.connection_class(**options)
        self._lock = asyncio.Lock()
        self.timeout_s = timeout_s

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def execute(self, commands: list[Command]) -> list[Any]:
        """Send the commands in one write; their replies in order (an error reply as its
        exception, not raised)."""
        c = self._connection
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._ready()
                    await c.send_packed_command(c.pack_commands(commands), check_health=False)
                    replies: list[Any] = []
                    for _ in commands:
                        try:
                            replies.append(await c.read_response())
                        except ResponseError as exc:
                            replies.append(exc)
                    return replies
            except BaseException:
                await c.disconnect()
                raise

    async def _ready(self) -> None:
        """Connected, with nothing unread: a connection the server closed (or one holding
        stray data) is replaced before anything is sent on it, as redis-py's pool does."""
        c = self._connection
        if not c.is_connected:
            return  # sending connects it
        try:
            stale = await c.can_read()
        except (RedisConnectionError, OSError):
            stale = True
        if stale:
            await c.disconnect()

    async def close(self) -> None:
        await self._connection.disconnect()


class RunQueue:
    """Queues, leases, retries and per-run state in Redis.

    Every change goes through one Lua script; the ``*_many`` forms send many scripts in one
    pipeline (one round trip), which is how the hot path stays cheap under load.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        finished_ttl_s: int = 3600,
        clock: Clock = SYSTEM,
        work_queued: asyncio.Event | None = None,
    ) -> None:
        self.redis = client
        self.clock = clock  # every script's "now" comes from it
        self.finished_ttl_s = finished_ttl_s
        self.queue_variants: set[str] = set()  # labelled queues seen (refreshed from Redis)
        # "Work was queued" goes to every replica on the wake channel, tagged with this
        # process's origin so that its own dispatcher, woken directly, can skip it.
        self.origin = uuid.uuid4().hex[:12]
        # Set when this process queued work its own dispatcher should lease (the one that
        # waits on it: pass the same event to both).
        self.work_queued = work_queued or asyncio.Event()
        self._scripts_conn = ScriptConnection(client)
        lib = (LUA_DIR / "lib.lua").read_text()
        self._scripts = {
            name: client.register_script(lib + "\n" + (LUA_DIR / f"{name}.lua").read_text())
            for name in SCRIPTS
        }

    async def _call(self, name: str, *args: Any) -> Any:
        return await self._scripts[name](keys=[], args=[keys.PREFIX, *args])

    async def load_scripts(self) -> None:
        """Load every script into Redis (at start, and again when Redis lost them), so that
        pipelined calls, which go by SHA alone, find them."""
        for script in self._scripts.values():
            script.sha = await self.redis.script_load(script.script)

    async def close(self) -> None:
        await self._scripts_conn.close()

    async def _call_many(self, calls: list[Call], extra: list[Command] | None = None) -> list[Any]:
        """Run script calls (name, arguments) in one pipeline, in order, then the ``extra``
        commands; returns the calls' replies. Calls go by SHA with no SCRIPT EXISTS round
        trip first (redis-py's own pipelined scripts check every time); a call that finds
        its script gone (Redis restarted or flushed) did not run, so the script is loaded
        and those calls are sent again."""
        replies = await self._pipeline(calls, extra or [])
        missing = [i for i, r in enumerate(replies[: len(calls)]) if isinstance(r, NoScriptError)]
        if missing:
            await self.load_scripts()
            again = await self._pipeline([calls[i] for i in missing], [])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
            # The calls sent again ran after those that had found their script, out of
            # order: a dispatch may have run before the submit or result that queued work.
            # A dispatch round now leases what they queued.
            self.work_queued.set()
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies[: len(calls)]

    async def _pipeline(self, calls: list[Call], extra: list[Command]) -> list[Any]:
        """One round trip: on the queue's own line when it is free (the hot path: lease
        rounds hold a lock, so they rarely find it busy), else on a pooled connection."""
        commands = [
            ("EVALSHA", self._scripts[name].sha, 0, keys.PREFIX, *args) for name, args in calls
        ] + extra
        if not self._scripts_conn.busy:
            return await self._scripts_conn.execute(commands)
        async with self.redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))

    # Submitting ---------------------------------------------------------------------------

    async def submit(
        self, run_id: str, run_fields: dict[str, str], steps: list[QueuedStep], request_id: str = ""
    ) -> tuple[bool, str]:
        """Create the run in Redis; (created, run_id) — the existing id for a repeated key."""
        [result] = await self.submit_many([Submission(run_id, run_fields, steps, request_id)])
        return result

    async def submit_many(self, runs: list[Submission]) -> list[tuple[bool, str]]:
        """Create runs in one round trip, then wake every replica's dispatcher once."""
        created, _ = await self.submit_and_dispatch(runs, [], 0)
        self.work_queued.set()
        return created

    async def submit_and_dispatch(
        self, runs: list[Submission], wants: list[tuple[str, list[str], int]], lease_ms: int
    ) -> tuple[list[tuple[bool, str]], list[list[Leased]]]:
        """Create runs and lease up to n steps to each (executor, queues, n), in one round
        trip: free slots take the new runs' first steps (or older waiting work) at once.
        Returns (created, run_id) per run, and the leases per want. Other replicas are told
        that work was queued; this one's caller decides itself."""
        now = self.clock.now_ms()
        ttl = self.finished_ttl_s
        calls: list[Call] = [("submit_run", _submit_args(r, now, ttl)) for r in runs]
        variants = {s.fields["queue"] for r in runs for s in r.steps} - self.queue_variants
        variants = {v for v in variants if not queue_names.is_plain(v)}

        then: list[Command] = [("PUBLISH", keys.WAKE_CHANNEL, self.origin)]
        if variants:
            then.insert(0, ("SADD", keys.QUEUE_VARIANTS, *variants))
        replies = await self._call_many(calls + _dispatch_calls(wants, lease_ms, now), then)
        self.queue_variants |= variants
        created = [(status == b"created", rid.decode()) for status, rid in replies[: len(runs)]]
        return created, [[_leased(item) for item in raw] for raw in replies[len(runs) :]]

    async def depths(self, queues: set[str]) -> dict[str, int]:
        """Steps waiting per queue, and retries waiting out their backoff ("delayed")."""
        names = sorted(queues)
        async with self.redis.pipeline(transaction=False) as pipe:
            for q in names:
                pipe.zcard(keys.queue(q))
            pipe.zcard(keys.DELAYED)
            counts = await pipe.execute()
        return {**dict(zip(names, counts[:-1], strict=True)), "delayed": counts[-1]}

    async def refresh_queue_variants(self) -> set[str]:
        found: Any = await self.redis.smembers(keys.QUEUE_VARIANTS)
        self.queue_variants |= {v.decode() for v in found}
        return self.queue_variants

    async def exists(self, run_ids: list[str]) -> list[bool]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.exists(keys.run(run_id))
            return [bool(x) for x in await pipe.execute()]

    # Dispatching and results ----------------------------------------------------------------

    async def dispatch(
        self, executor_id: str, queues: list[str], n: int, lease_ms: int
    ) -> list[Leased]:
        [leased] = await self.dispatch_many([(executor_id, queues, n)], lease_ms)
        return leased

    async def dispatch_many(
        self, wants: list[tuple[str, list[str], int]], lease_ms: int
    ) -> list[list[Leased]]:
        """Lease up to n steps to each (executor, queues, n), in order, in one round trip."""
        replies = await self._call_many(_dispatch_calls(wants, lease_ms, self.clock.now_ms()))
        return [[_leased(item) for item in raw] for raw in replies]

    async def complete(
        self,
        member: str,
        attempt: int,
        outcome: str,
        output_json: str,
        error: str,
        retry_at_ms: int,
        timings: dict[str, int] | None = None,
        lease: str = "",
    ) -> Verdict:
        [verdict] = await self.complete_many(
            [
                Completion(
                    member, attempt, outcome, output_json, error, retry_at_ms, timings or {}, lease
                )
            ]
        )
        return verdict

    async def complete_many(self, results: list[Completion]) -> list[Verdict]:
        """Record many step results in one round trip; one verdict each, in order. A result
        that queues steps tells every replica (the script publishes the wake message)."""
        replies = await self._call_many(self._complete_calls(results, self.clock.now_ms()))
        verdicts = [_verdict(raw) for raw in replies]
        if any(v.verdict in {"completed", "released"} for v in verdicts):  # steps queued
            self.work_queued.set()
        return verdicts

    async def complete_and_dispatch(
        self, results: list[Completion], wants: list[tuple[str, list[str], int]], lease_ms: int
    ) -> tuple[list[Verdict], list[list[Leased]]]:
        """``complete_many`` then ``dispatch_many`` in the same round trip: the slots the
        results freed take the steps they made ready (and any other waiting work) at once.
        Other replicas are told when steps were queued; this one's caller decides itself."""
        now = self.clock.now_ms()
        calls = self._complete_calls(results, now) + _dispatch_calls(wants, lease_ms, now)
        replies = await self._call_many(calls)
        verdicts = [_verdict(raw) for raw in replies[: len(results)]]
        leases = [[_leased(item) for item in raw] for raw in replies[len(results) :]]
        return verdicts, leases

    async def _announce(self) -> None:
        """Tell every replica's dispatcher that work was queued."""
        await self.redis.publish(keys.WAKE_CHANNEL, self.origin)

    def _complete_calls(self, results: list[Completion], now: int) -> list[Call]:
        return [
            (
                "complete",
                [
                    c.member,
                    c.attempt,
                    c.outcome,
                    c.output_json,
                    c.error,
                    now,
                    c.retry_at_ms,
                    self.finished_ttl_s,
                    json.dumps(c.timings),
                    keys.WAKE_CHANNEL,
                    self.origin,
                    c.lease,
                    c.executor,
                ],
            )
            for c in results
        ]

    async def cancel_run(self, run_id: str, reason: str) -> tuple[str, list[tuple[str, str]]]:
        """Cancel a run; ('cancelled', running steps to stop) | ('finished', state) | missing."""
        raw = await self._call(
            "cancel_run", run_id, reason, self.clock.now_ms(), self.finished_ttl_s
        )
        words = [w.decode() for w in raw]
        if words[0] == "finished":
            return words[1], []
        return words[0], _pairs(words[1:])

    async def annotate(self, fields: dict[str, dict[str, str]]) -> None:
        """Set fields on step hashes (lineage edges, span ids): one write per dispatch round."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for member, values in fields.items():
                run_id, _, step_id = member.partition(":")
                pipe.hset(keys.step(run_id, step_id), mapping=values)  # type: ignore[arg-type]
            await pipe.execute()

    async def add_progress(
        self, run_id: str, step_id: str, attempt: int, fraction: float, message: str
    ) -> None:
        """Append a progress event to the run's stream (informational: no state changes)."""
        await self.redis.xadd(
            keys.events(run_id),
            {
                "step": step_id,
                "attempt": attempt,
                "state": "RUNNING",
                "msg": message,
                "progress": f"{fraction:.4f}",
                "t": self.clock.now_ms(),
                "kind": "PROGRESS",
            },
        )

    async def add_log(
        self, run_id: str, step_id: str, attempt: int, level: str, message: str
    ) -> None:
        """A line a running step logged: an event for watchers, and kept with the attempt."""
        line = f"{level} {message}"
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(
                keys.events(run_id),
                {
                    "step": step_id,
                    "attempt": attempt,
                    "state": "RUNNING",
                    "msg": line,
                    "t": self.clock.now_ms(),
                    "kind": "LOG",
                },
            )
            pipe.rpush(keys.logs(run_id, step_id), line)
            pipe.ltrim(keys.logs(run_id, step_id), -200, -1)
            pipe.expire(keys.logs(run_id, step_id), self.finished_ttl_s)
            await pipe.execute()

    async def heartbeat(
        self, running: list[tuple[str, int, str]], lease_ms: int, executor: str = ""
    ) -> list[str]:
        """Renew ``executor``'s leases (step-key, attempt, lease id); return the step-keys
        whose attempt or lease is no longer current (or not that executor's)."""
        if not running:
            return []
        flat = [x for member, attempt, lease in running for x in (member, attempt, lease)]
        stale = await self._call("heartbeat", self.clock.now_ms(), lease_ms, executor, *flat)
        return [s.decode() for s in stale]

    async def expire_leases(self, limit: int = 100) -> list[dict[str, Any]]:
        raw = await self._call("expire_leases", self.clock.now_ms(), limit, self.finished_ttl_s)
        return [json.loads(x) for x in raw]

    async def promote_due(self, limit: int = 500) -> int:
        n = int(await self._call("promote_due", self.clock.now_ms(), limit))
        if n:
            self.work_queued.set()
            await self._announce()
        return n

    # Reading ------------------------------------------------------------------------------

    async def read_run(self, run_id: str) -> RunSnapshot:
        """The run hash, its step hashes in order, and its outputs; empty when not in Redis."""
        return (await self.read_runs([run_id]))[run_id]

    async def read_runs(self, run_ids: list[str]) -> dict[str, RunSnapshot]:
        """``read_run`` for many runs in two round trips."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hgetall(keys.run(run_id))
                pipe.hgetall(keys.outputs(run_id))
            first = await pipe.execute()
        runs = {rid: _text(first[2 * i]) for i, rid in enumerate(run_ids)}
        outputs = {rid: _text(first[2 * i + 1]) for i, rid in enumerate(run_ids)}
        wanted = [
            (rid, sid) for rid, h in runs.items() if h for sid in json.loads(h.get("steps", "[]"))
        ]
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid, sid in wanted:
                pipe.hgetall(keys.step(rid, sid))
            second = await pipe.execute()
        steps: dict[str, list[dict[str, str]]] = {rid: [] for rid in run_ids}
        for (rid, sid), h in zip(wanted, second, strict=True):
            steps[rid].append({"step_id": sid, **_text(h)})
        return {
            rid: RunSnapshot(runs[rid], steps[rid], outputs[rid])
            if runs[rid]
            else RunSnapshot({}, [], {})
            for rid in run_ids
        }

    async def read_events(
        self, run_id: str, after: str, block_ms: int | None
    ) -> list[tuple[str, dict[str, str]]]:
        """Events of a run after ``after`` ("0" for all), waiting up to ``block_ms`` for one
        (None: not waiting)."""
        found: Any = await self.redis.xread({keys.events(run_id): after}, block=block_ms, count=200)
        return [
            (event_id.decode(), _text(fields))
            for _stream, entries in found or []
            for event_id, fields in entries
        ]

    async def retain(self, runs: dict[str, list[str]], seconds: int) -> None:
        """Let finished runs (run id -> step ids) expire from Redis in ``seconds``."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id, step_ids in runs.items():
                for key in (keys.run(run_id), keys.outputs(run_id), keys.events(run_id)):
                    pipe.expire(key, seconds)
                for step_id in step_ids:
                    pipe.expire(keys.step(run_id, step_id), seconds)
                    pipe.expire(keys.logs(run_id, step_id), seconds)
            await pipe.execute()

    async def run_state(self, run_id: str) -> str:
        """The run's state as Redis holds it ("" when Redis no longer has the run)."""
        state: Any = await self.redis.hget(keys.run(run_id), "state")  # type: ignore[misc]
        return bytes(state).decode() if state else ""

    async def watch_facts(self, run_id: str) -> tuple[str | None, bool]:
        """What a watch starts from, in one round trip: the run's namespace as Redis holds
        it (None when Redis no longer has the run), and whether its events are there."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.run(run_id), ["state", "namespace"])
            pipe.exists(keys.events(run_id))
            (state, namespace), events = await pipe.execute()
        if not state:
            return None, bool(events)
        return (bytes(namespace).decode() if namespace else auth.DEFAULT_NAMESPACE), bool(events)

    async def events_exist(self, run_id: str) -> bool:
        return bool(await self.redis.exists(keys.events(run_id)))

    # The fleet ----------------------------------------------------------------------------

    async def save_executors(self, executors: dict[str, str]) -> None:
        """Record executors (id -> JSON description) for ListExecutors on any replica."""
        if executors:
            await self.redis.hset(keys.EXECUTORS, mapping=executors)  # type: ignore[arg-type]

    async def load_executors(self) -> dict[str, str]:
        return _text(await self.redis.hgetall(keys.EXECUTORS))

    async def forget_executors(self, executor_ids: list[str]) -> None:
        if executor_ids:
            await self.redis.hdel(keys.EXECUTORS, *executor_ids)

    # Redis losing data --------------------------------------------------------------------

    async def claim_epoch(self, epoch: str) -> str | None:
        """The data epoch marker: returns the current one, or sets ``epoch`` and returns None
        when Redis has none (a new or a flushed Redis)."""
        if await self.redis.set(keys.EPOCH, epoch, nx=True):
            return None
        current: Any = await self.redis.get(keys.EPOCH)
        return current.decode() if current else None


def _submit_args(r: Submission, now: int, finished_ttl_s: int) -> list[Any]:
    payload = [
        {
            "step_id": s.step_id,
            "deps": s.deps,
            "dependents": s.dependents,
            "fields": s.fields,
            **({"output": r.done[s.step_id]} if s.step_id in r.done else {}),
            **({"attempt": r.attempts[s.step_id]} if s.step_id in r.attempts else {}),
        }
        for s in r.steps
    ]
    return [
        r.run_id,
        json.dumps(r.run_fields),
        json.dumps(payload),
        now,
        r.request_id,
        IDEMPOTENCY_TTL_S,
        finished_ttl_s,
        r.not_before_ms,
    ]


def _dispatch_calls(wants: list[tuple[str, list[str], int]], lease_ms: int, now: int) -> list[Call]:
    return [
        ("dispatch", [now, lease_ms, executor_id, n, secrets.token_hex(8), *queues])
        for executor_id, queues, n in wants
    ]


def _verdict(raw: list[Any]) -> Verdict:
    words = [w.decode() if isinstance(w, bytes) else str(w) for w in raw]
    cancel = _pairs(words[3:]) if words[0] == "failed" else []
    final = _run_snapshot(json.loads(words[2])) if words[2] else None
    return Verdict(words[0], cancel, flat_dict(json.loads(words[1])), final)


def flat_dict(flat: Any) -> dict[str, str]:
    """A flat [k, v, k, v...] list from Lua as a dict (Lua encodes an empty one as {})."""
    return dict(_pairs(flat)) if isinstance(flat, list) else {}


def _run_snapshot(doc: dict[str, Any]) -> RunSnapshot:
    """A run as the complete script returns it: the same shape ``read_run`` gives."""
    run = flat_dict(doc["run"])
    steps = [
        {"step_id": step_id, **flat_dict(h)}
        for step_id, h in zip(json.loads(run["steps"]), doc["steps"] or [], strict=True)
    ]
    return RunSnapshot(run, steps, flat_dict(doc["outputs"]))


def _leased(item: bytes) -> Leased:
    d = json.loads(item)
    run_id, _, step_id = d["member"].partition(":")
    outputs = d["outputs"] if isinstance(d["outputs"], dict) else {}
    trace = d.get("trace") or [None, None]
    spans = d.get("spans") if isinstance(d.get("spans"), dict) else {}
    return Leased(
        d["member"],
        run_id,
        step_id,
        int(d["attempt"]),
        flat_dict(d["step"]),
        d["input"] or "{}",
        outputs,
        trace[0] or "",
        trace[1] or "",
        {k: v for k, v in (spans or {}).items() if isinstance(v, str)},
        d.get("started") is True,
    )
