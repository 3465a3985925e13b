"""``RunQueue``: the scheduler's hot state in Redis, changed only through the Lua scripts."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from services.scheduler import keys

LUA_DIR = Path(__file__).parent / "lua"
SCRIPTS = ("submit_run", "dispatch", "complete", "heartbeat", "expire_leases", "promote_due")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class StepSpec:
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


@dataclass(frozen=True)
class Verdict:
    """What the scheduler decided about a result: the verdict and the attempts to cancel."""

    verdict: str
    cancel: list[tuple[str, str]]  # (step-key, executor id)


def _text(mapping: Any) -> dict[str, str]:
    """A Redis reply mapping of bytes to bytes, as text."""
    return {k.decode(): v.decode() for k, v in mapping.items()}


def _pairs(flat: list[str]) -> list[tuple[str, str]]:
    return list(zip(flat[0::2], flat[1::2], strict=True))


class RunQueue:
    """Queues, leases, retries and per-run state in Redis."""

    def __init__(self, client: aioredis.Redis, finished_ttl_s: int = 3600) -> None:
        self.redis = client
        self.finished_ttl_s = finished_ttl_s
        lib = (LUA_DIR / "lib.lua").read_text()
        self._scripts = {
            name: client.register_script(lib + "\n" + (LUA_DIR / f"{name}.lua").read_text())
            for name in SCRIPTS
        }

    async def _call(self, name: str, *args: Any) -> Any:
        return await self._scripts[name](keys=[], args=[keys.PREFIX, *args])

    async def submit(
        self, run_id: str, run_fields: dict[str, str], steps: list[StepSpec], request_id: str = ""
    ) -> tuple[bool, str]:
        """Create the run in Redis; (created, run_id) — the existing id for a repeated key."""
        payload = [
            {"step_id": s.step_id, "deps": s.deps, "dependents": s.dependents, "fields": s.fields}
            for s in steps
        ]
        status, rid = await self._call(
            "submit_run",
            run_id,
            json.dumps(run_fields),
            json.dumps(payload),
            now_ms(),
            request_id,
            24 * 3600,
        )
        await self.redis.publish(keys.WAKE_CHANNEL, "1")
        return status == b"created", rid.decode()

    async def dispatch(
        self, executor_id: str, queues: list[str], n: int, lease_ms: int
    ) -> list[Leased]:
        raw = await self._call("dispatch", now_ms(), lease_ms, executor_id, n, *queues)
        leased = []
        for item in raw:
            d = json.loads(item)
            run_id, _, step_id = d["member"].partition(":")
            step = dict(_pairs(d["step"]))
            outputs = d["outputs"] if isinstance(d["outputs"], dict) else {}
            leased.append(
                Leased(
                    d["member"],
                    run_id,
                    step_id,
                    int(d["attempt"]),
                    step,
                    d["input"] or "{}",
                    outputs,
                )
            )
        return leased

    async def complete(
        self,
        member: str,
        attempt: int,
        outcome: str,
        output_json: str,
        error: str,
        retry_at_ms: int,
    ) -> Verdict:
        raw = await self._call(
            "complete",
            member,
            attempt,
            outcome,
            output_json,
            error,
            now_ms(),
            retry_at_ms,
            self.finished_ttl_s,
        )
        words = [w.decode() if isinstance(w, bytes) else str(w) for w in raw]
        cancel = _pairs(words[1:]) if words[0] == "failed" else []
        if words[0] in {"retrying", "completed", "released"}:
            await self.redis.publish(keys.WAKE_CHANNEL, "1")
        return Verdict(words[0], cancel)

    async def record_lineage(self, lineage: dict[str, list[tuple[str, str]]]) -> None:
        """Keep each step's lineage edges on its hash (one write for a dispatch round)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for member, edges in lineage.items():
                run_id, _, step_id = member.partition(":")
                pipe.hset(keys.step(run_id, step_id), "lineage", json.dumps(edges))
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
                "t": now_ms(),
                "kind": "PROGRESS",
            },
        )

    async def heartbeat(self, running: list[tuple[str, int]], lease_ms: int) -> list[str]:
        """Renew leases; return the step-keys whose attempt is no longer current."""
        if not running:
            return []
        flat = [x for member, attempt in running for x in (member, attempt)]
        stale = await self._call("heartbeat", now_ms(), lease_ms, *flat)
        return [s.decode() for s in stale]

    async def expire_leases(self, limit: int = 100) -> list[dict[str, Any]]:
        raw = await self._call("expire_leases", now_ms(), limit, self.finished_ttl_s)
        return [json.loads(x) for x in raw]

    async def promote_due(self, limit: int = 500) -> int:
        n = int(await self._call("promote_due", now_ms(), limit))
        if n:
            await self.redis.publish(keys.WAKE_CHANNEL, "1")
        return n

    async def read_run(
        self, run_id: str
    ) -> tuple[dict[str, str], list[dict[str, str]], dict[str, str]]:
        """The run hash, its step hashes in order, and its outputs; empty when not in Redis."""
        run = _text(await self.redis.hgetall(keys.run(run_id)))
        if not run:
            return {}, [], {}
        step_ids = json.loads(run.get("steps", "[]"))
        async with self.redis.pipeline(transaction=False) as pipe:
            for step_id in step_ids:
                pipe.hgetall(keys.step(run_id, step_id))
            pipe.hgetall(keys.outputs(run_id))
            results = await pipe.execute()
        steps = []
        for step_id, h in zip(step_ids, results[:-1], strict=True):
            steps.append({"step_id": step_id, **_text(h)})
        outputs = _text(results[-1])
        return run, steps, outputs

    async def read_events(
        self, run_id: str, after: str, block_ms: int
    ) -> list[tuple[str, dict[str, str]]]:
        """Events of a run after ``after`` ("0" for all), waiting up to ``block_ms`` for one."""
        found: Any = await self.redis.xread({keys.events(run_id): after}, block=block_ms, count=200)
        return [
            (event_id.decode(), _text(fields))
            for _stream, entries in found or []
            for event_id, fields in entries
        ]

    async def events_exist(self, run_id: str) -> bool:
        return bool(await self.redis.exists(keys.events(run_id)))
