"""``DependencyStatus``: a backing service (Redis, MongoDB, S3) as a service found it when
asked (CheckDependencies on the registry and the scheduler), and ``check`` that asks."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from wtm.v1 import run_pb2

CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class DependencyStatus:
    name: str  # "redis", "mongodb", "s3"
    ok: bool
    detail: str  # what answered, or what went wrong
    latency_seconds: float
    clock_offset_seconds: float | None = None  # a scheduler's Redis: its clock minus Redis's


async def check(
    name: str, probe: Callable[[], Awaitable[str]], timeout: float = CHECK_TIMEOUT_S
) -> DependencyStatus:
    """Run ``probe`` (it returns what answered) within ``timeout``; a failure becomes the
    status's detail, never an exception: the caller asked because something may be down."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            detail = await probe()
        ok = True
    except TimeoutError:
        ok, detail = False, f"no answer within {timeout:g}s"
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        ok, detail = False, f"{type(exc).__name__}: {exc}"[:300]
    return DependencyStatus(name, ok, detail, time.perf_counter() - started)


_probes = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="dependency-check")


def check_blocking(
    probes: list[tuple[str, Callable[[], str]]], timeout: float = CHECK_TIMEOUT_S
) -> list[DependencyStatus]:
    """``check`` for blocking probes (the registry's clients), all at once: each runs on a
    thread of its own, so one whose client retries for longer than ``timeout`` is not
    waited for."""
    started = time.perf_counter()
    futures = [(name, _probes.submit(probe)) for name, probe in probes]
    found = []
    for name, future in futures:
        left = max(0.0, timeout - (time.perf_counter() - started))
        try:
            detail = future.result(left)
            ok = True
        except concurrent.futures.TimeoutError:
            ok, detail = False, f"no answer within {timeout:g}s"
        except Exception as exc:  # noqa: BLE001 - any failure is the answer
            ok, detail = False, f"{type(exc).__name__}: {exc}"[:300]
        found.append(DependencyStatus(name, ok, detail, time.perf_counter() - started))
    return found


def dependency_to_proto(d: DependencyStatus) -> run_pb2.DependencyStatus:
    """The wire form, for both services' CheckDependencies."""
    m = run_pb2.DependencyStatus(name=d.name, ok=d.ok, detail=d.detail)
    m.latency.FromNanoseconds(int(d.latency_seconds * 1e9))
    if d.clock_offset_seconds is not None:
        m.clock_offset.FromNanoseconds(int(d.clock_offset_seconds * 1e9))
    return m
