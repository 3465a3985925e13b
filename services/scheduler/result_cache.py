"""``ResultCache``: a step's output reused for the same task code on the same input.

A step whose pipeline enables caching (``global_settings.enable_caching``, a step's own
``cache``, or the submit's ``cache``) is looked up when it is leased: by the sha256 of its
task package's digest and its input document in canonical JSON, within its run's namespace.
A hit completes the step with the stored output and it does not run; the step shows
``cached_from`` (the run and output id that computed the output, also a lineage edge to
this step's output). A miss runs; when it completes, complete.lua stores its output under
the key for ``ttl_seconds``, if the output (inline JSON, or a reference to an artifact) is
at most ``max_bytes``. Inputs name artifacts by content digest, so the same file is the
same input.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from services.scheduler import keys

DEFAULT_TTL_SECONDS = 24 * 3600
DEFAULT_MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class CachedOutput:
    """An output found in the cache, and where it was computed ("run_id/output_id")."""

    output_json: str
    source: str


def canonical(input_json: str) -> str:
    """One text per JSON value: keys sorted, no insignificant spaces."""
    return json.dumps(
        json.loads(input_json), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


class ResultCache:
    """Looks outputs up; says how complete.lua stores them."""

    def __init__(
        self,
        redis: Any,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.max_bytes = max_bytes
        self.hits = 0  # lookups that found an output (for the metrics)
        self.misses = 0

    @staticmethod
    def key(namespace: str, digest: str, input_json: str) -> str:
        h = hashlib.sha256(f"{digest}\n{canonical(input_json)}".encode())
        return keys.result_cache(namespace, h.hexdigest())

    async def lookup(self, cache_keys: list[str]) -> list[CachedOutput | None]:
        """What each key holds, in one round trip."""
        if not cache_keys:
            return []
        found: list[CachedOutput | None] = []
        for raw in await self.redis.mget(cache_keys):
            entry = json.loads(raw) if raw else None
            found.append(CachedOutput(entry["output"], entry["from"]) if entry else None)
        hits = sum(1 for f in found if f is not None)
        self.hits += hits
        self.misses += len(found) - hits
        return found

    def store_fields(self, key: str) -> dict[str, str]:
        """The step fields that tell complete.lua to store the attempt's output."""
        return {
            "cache_key": key,
            "cache_ttl": str(self.ttl_seconds),
            "cache_max": str(self.max_bytes),
        }


def step_caches(run: bool | None, step: bool | None, pipeline: bool) -> bool:
    """Whether a step's output is cached: the submit's ``cache`` decides when given; else
    the step's own ``cache`` key; else the pipeline's ``enable_caching``."""
    if run is not None:
        return run
    return pipeline if step is None else step
