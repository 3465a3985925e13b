"""``RunQueue``: the scheduler's hot state in Redis, changed only through the Lua scripts."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from services.scheduler import keys, queue_names, wake
from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.queue_records import (
    Completion,
    Ended,
    Leased,
    QueuedStep,
    Submission,
    Verdict,
    Want,
    dispatch_calls,
    index_commands,
    leases_of,
    pairs_of,
    ready_queues,
    submit_args,
    verdict_of,
    words_of,
)  # fmt: skip
from services.scheduler.run_notes import RunNotes
from services.scheduler.run_reader import RunReader
from services.scheduler.script_connection import Command, ScriptLines

LUA_DIR = Path(__file__).parent / "lua"
SCRIPTS = (
    "submit_run", "dispatch", "complete", "heartbeat", "expire_leases", "promote_due",
    "cancel_run", "expire_runs", "retain", "queue_stats", "signal", "expire_signals",
)  # fmt: skip
Call = tuple[str, list[Any]]  # a script's name and its arguments (after the key prefix)


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
        # Default-namespace queues without labels that work was queued on: executors find
        # those by name, so only the reports (ListQueues, metrics) need this list.
        self.plain_queues: set[str] = set()
        # "Work was queued" goes to every replica on the wake channel, tagged with this
        # process's origin so that its own dispatcher, woken directly, can skip it.
        self.origin = uuid.uuid4().hex[:12]
        self.announce = wake.Announcer(client, self.origin)
        # Set when this process queued work its own dispatcher should lease (the one that
        # waits on it: pass the same event to both).
        self.work_queued = work_queued or asyncio.Event()
        # Counts the times work was queued on queues this replica cannot name (retries
        # coming due, leases that expired, other replicas' wake messages, a new variant):
        # an executor whose queues were empty at one count is asked again at the next. Work
        # it can name (its own submits, the steps its results made ready) goes to new_work
        # instead: steps per queue, so that only as many idle executors as there are new
        # steps are asked.
        self.queued_epoch = 0
        self.new_work: Counter[str] = Counter()
        # When the first thing left waiting is due (ms; DueTimer): a short batch in its queue
        # (``batch``), a step put aside in the delayed set (``delayed``: a rate limit's
        # reserved start, a retry).
        self.due_ms: dict[str, int] = {}
        self.cancelled: list[Ended] = []  # by concurrency strategies, until take_cancelled
        # Runs that ended in their submit script (every step skipped or given), until
        # take_ended_at_submit: no result will tell of their end.
        self.ended_at_submit: list[str] = []
        self._lines = ScriptLines(client)
        self.reader = RunReader(client)  # the read side, for whoever reports runs
        self.notes = RunNotes(client, clock, finished_ttl_s)  # what changes no run's state
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
        await self.announce.close()
        await self._lines.close()

    async def _call_many(
        self, calls: list[Call], extra: list[Command] | None = None, first: Sequence[Command] = ()
    ) -> list[Any]:
        """Run the ``first`` commands, script calls (name, arguments), then the ``extra``
        commands, in one pipeline, in order; returns the calls' replies. Calls go by SHA with
        no SCRIPT EXISTS round trip first (redis-py's own pipelined scripts check every time);
        a call that finds its script gone (Redis restarted or flushed) did not run, so the
        script is loaded and those calls are sent again."""
        replies = await self._pipeline(calls, extra or [], list(first))
        for reply in replies[: len(first)]:
            if isinstance(reply, Exception):
                raise reply
        replies = replies[len(first) :]
        missing = [i for i, r in enumerate(replies[: len(calls)]) if isinstance(r, NoScriptError)]
        if missing:
            await self.load_scripts()
            again = await self._pipeline([calls[i] for i in missing], [])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
            # The calls sent again ran after those that had found their script, out of
            # order: a dispatch may have run before the submit or result that queued work.
            # A dispatch round now leases what they queued.
            self.work_was_queued()
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies[: len(calls)]

    async def _pipeline(
        self, calls: list[Call], extra: list[Command], first: Sequence[Command] = ()
    ) -> list[Any]:
        """One round trip, on one of the queue's own lines (``ScriptLines``)."""
        commands = [
            *first,
            *(("EVALSHA", self._scripts[name].sha, 0, keys.PREFIX, *args) for name, args in calls),
            *extra,
        ]
        return await self._lines.execute(commands)

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
        self.work_was_queued(ready_queues(runs))
        return created

    async def submit_and_dispatch(
        self, runs: list[Submission], wants: list[Want], lease_ms: int
    ) -> tuple[list[tuple[bool, str]], list[list[Leased]]]:
        """Create runs and lease up to n steps to each (executor, queues, n), in one round
        trip: free slots take the new runs' first steps (or older waiting work) at once.
        Returns (created, run_id) per run, and the leases per want. Other replicas are told
        of the steps it left waiting; this one's caller decides itself."""
        now = self.clock.now_ms()
        ttl = self.finished_ttl_s
        calls: list[Call] = [("submit_run", submit_args(r, now, ttl)) for r in runs]
        plain, variants = self._unknown({s.fields["queue"] for r in runs for s in r.steps})
        then: list[Command] = [("SADD", keys.PLAIN_QUEUES, *plain)] if plain else []
        if variants:
            then.append(("SADD", keys.QUEUE_VARIANTS, *variants))
        first = index_commands(runs, [args for _, args in calls], now)  # before the runs
        replies = await self._call_many(calls + self._dispatches(wants, lease_ms, now), then, first)
        self.learned(plain, variants)
        created = []
        for reply in replies[: len(runs)]:  # [status, run id] or [status, run id, "ended"]
            created.append((reply[0] == b"created", reply[1].decode()))
            if len(reply) > 2:
                self.ended_at_submit.append(reply[1].decode())
        leases = self._leases(replies[len(runs) :])
        self.announce.left(ready_queues(runs), leases)
        return created, leases

    async def queue_stats(self, queues: set[str]) -> dict[str, tuple[int, int | None]]:
        """Per queue: steps waiting, and when the oldest was queued (ms; None when empty)."""
        names = sorted(queues)
        if not names:
            return {}
        found = await self._call("queue_stats", *names)
        return {
            q: (int(depth), None if int(oldest) < 0 else int(oldest))
            for q, (depth, oldest) in zip(names, found, strict=True)
        }

    def _unknown(self, named: set[str]) -> tuple[set[str], set[str]]:
        """Of queues ``named``, the plain ones and the variants not known here yet."""
        plain = {q for q in named if queue_names.is_plain(q)} - self.plain_queues
        return plain, named - plain - self.plain_queues - self.queue_variants

    def learned(self, plain: set[str], variants: set[str]) -> None:
        """Queues first seen: a new variant wakes a round that asks every idle executor (each
        one's queues were worked out without it: its first step would wait for a backstop)."""
        self.plain_queues |= plain
        self.queue_variants |= variants
        if variants:
            self.work_was_queued()

    async def refresh_queue_variants(self) -> set[str]:
        """The labelled and other-namespace queues every replica announced (and the plain
        ones, into ``plain_queues``)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(keys.QUEUE_VARIANTS)
            pipe.smembers(keys.PLAIN_QUEUES)
            variants, plain = await pipe.execute()
        self.queue_variants |= {v.decode() for v in variants}
        self.plain_queues |= {v.decode() for v in plain}
        return self.queue_variants

    # Dispatching and results ----------------------------------------------------------------

    async def dispatch(
        self, executor_id: str, queues: list[str], n: int, lease_ms: int
    ) -> list[Leased]:
        [leased] = await self.dispatch_many([Want(executor_id, queues, n)], lease_ms)
        return leased

    async def dispatch_many(self, wants: list[Want], lease_ms: int) -> list[list[Leased]]:
        """Lease up to n steps to each (executor, queues, n), in order, in one round trip."""
        replies = await self._call_many(self._dispatches(wants, lease_ms, self.clock.now_ms()))
        return self._leases(replies)

    async def complete(
        self,
        member: str,
        attempt: int,
        outcome: str,
        output_json: str,
        error: str,
        retry_at_ms: int,
        timings: dict[str, int | str] | None = None,
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
        verdicts = [verdict_of(raw) for raw in replies]
        queued = Counter(q for v in verdicts for q in v.queued_on)
        if queued:
            self.work_was_queued(queued)
        return verdicts

    async def complete_and_dispatch(
        self, results: list[Completion], wants: list[Want], lease_ms: int
    ) -> tuple[list[Verdict], list[list[Leased]]]:
        """``complete_many`` then ``dispatch_many`` in the same round trip: the slots the
        results freed take the steps they made ready (and any other waiting work) at once.
        Other replicas are told of the steps it left waiting; this one's caller decides
        (``Leaser.results_queued``) whom its next round asks for them."""
        now = self.clock.now_ms()
        completes = self._complete_calls(results, now, wake=False)  # told below
        replies = await self._call_many(completes + self._dispatches(wants, lease_ms, now))
        verdicts = [verdict_of(raw) for raw in replies[: len(results)]]
        leases = self._leases(replies[len(results) :])
        self.announce.left(Counter(q for v in verdicts for q in v.queued_on), leases)
        return verdicts, leases

    def take_cancelled(self) -> list[Ended]:
        taken, self.cancelled = self.cancelled, []
        return taken

    def take_ended_at_submit(self) -> list[str]:
        taken, self.ended_at_submit = self.ended_at_submit, []
        return taken

    def _dispatches(self, wants: list[Want], lease_ms: int, now: int) -> list[Call]:
        return dispatch_calls(wants, lease_ms, now, self.finished_ttl_s)

    def _leases(self, replies: list[Any]) -> list[list[Leased]]:
        """The leases of dispatch replies, noting when a short batch left waiting is due."""
        found = []
        for raw in replies:
            leased, due, ended = leases_of(raw)
            found.append(leased)
            for kind, at in due.items():
                self._due(kind, at)
            self.cancelled += ended
        return found

    def work_was_queued(self, on: Counter[str] | None = None, wake: bool = True) -> None:
        """Steps were queued (here, or by another replica), on the queues ``on`` counts
        (``None``: who knows where): lease rounds ask the executors that may take them, those
        that found nothing last time included. ``wake=False``: the caller's own round, about
        to start, asks them; the lease loop need not run another."""
        if on is None:
            self.queued_epoch += 1
        else:
            self.new_work.update(on)
        if wake:
            self.work_queued.set()

    def heard(self, data: bytes | str) -> None:
        """A wake message from the channel (``wake.py``): work queued by another process."""
        origin, queued = wake.parse(data)
        if origin != self.origin:
            self.work_was_queued(queued)
            if queued:  # another replica's first step on a variant: every idle executor
                self.learned(*self._unknown(set(queued)))

    def take_new_work(self) -> Counter[str]:
        """The steps per queue submitted here since the last call."""
        taken, self.new_work = self.new_work, Counter()
        return taken

    def _complete_calls(self, results: list[Completion], now: int, wake: bool = True) -> list[Call]:
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
                    keys.WAKE_CHANNEL if wake else "",  # "": the caller tells what is left
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
        words = words_of(raw)
        if words[0] == "finished":
            return words[1], []
        return words[0], pairs_of(words[1:])

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

    async def time_out_runs(self, limit: int = 100) -> tuple[list[str], list[tuple[str, str]]]:
        """End TIMED_OUT the runs past their deadline: their ids, and the running steps to stop."""
        raw = await self._call("expire_runs", self.clock.now_ms(), limit, self.finished_ttl_s)
        words = words_of(raw)
        count = int(words[0])
        return words[1 : 1 + count], pairs_of(words[1 + count :])

    async def signal(self, member: str, document: str, by: str) -> list[str]:
        """A signal for a step (``signal.lua``): its verdict, then the queues it went on."""
        at, wake_on, origin = self.clock.now_ms(), keys.WAKE_CHANNEL, self.origin
        words = words_of(await self._call("signal", member, document, by, at, wake_on, origin))
        if words[0] == "queued" and len(words) > 1:
            self.work_was_queued(Counter(words[1:]))
        return words

    async def expire_signals(self, limit: int = 100) -> list[dict[str, Any]]:
        """Waits for signals that ran out: each step ended (``cancel``, ``snapshot``), or
        queued without one (``queued``: announced here)."""
        raw = await self._call("expire_signals", self.clock.now_ms(), limit, self.finished_ttl_s)
        found = [json.loads(x) for x in raw]
        await self.announce_queued(Counter(q for e in found for q in e.get("queued", [])))
        return found

    def _due(self, kind: str, due_ms: int | None) -> None:
        if due_ms is not None and due_ms < self.due_ms.get(kind, due_ms + 1):
            self.due_ms[kind] = due_ms

    async def promote_due(self, limit: int = 500) -> int:
        """Queue the steps of the delayed set that came due (retries, rate-limited steps);
        every replica asks only those queues' executors. Notes when the next is due."""
        raw = await self._call("promote_due", self.clock.now_ms(), limit)
        self._due("delayed", next((n for n in raw if isinstance(n, int)), None))
        queued = Counter(q.decode() for q in raw if not isinstance(q, int))
        await self.announce_queued(queued)
        return sum(queued.values())

    async def announce_queued(self, queued: Counter[str]) -> None:
        """Steps were queued here on the queues ``queued`` counts: lease rounds here and on the
        other replicas (the wake channel) ask those queues' executors."""
        if queued:
            self.work_was_queued(queued)
            await self.redis.publish(keys.WAKE_CHANNEL, wake.message(self.origin, queued))

    async def retain(self, run_ids: list[str], seconds: int) -> None:
        """Let finished runs expire from Redis in ``seconds`` (one script call per 1,000)."""
        for first in range(0, len(run_ids), 1000):
            await self._call("retain", seconds, *run_ids[first : first + 1000])

    # Redis losing data --------------------------------------------------------------------

    async def claim_epoch(self, epoch: str) -> str | None:
        """The data epoch marker: returns the current one, or sets ``epoch`` and returns None
        when Redis has none (a new or a flushed Redis)."""
        if await self.redis.set(keys.EPOCH, epoch, nx=True):
            return None
        current: Any = await self.redis.get(keys.EPOCH)
        return current.decode() if current else None
