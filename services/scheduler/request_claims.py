"""``RequestClaims``: idempotency keys in MongoDB's ``run_requests`` — which run (or batch)
a request id made. ``_id`` is the key, so of several concurrent submits with one request id
the unique index lets exactly one claim it."""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from common.errors import InvalidArgument


class RequestClaims:
    """Request ids and what they made (``runs`` too: runs from before claims existed)."""

    def __init__(self, requests: AsyncCollection, runs: AsyncCollection) -> None:
        self._requests = requests
        self._runs = runs

    async def claim(self, key: str, ident: str) -> str | None:
        """Claim idempotency ``key`` for ``ident`` (a run or batch id): None when this call
        holds it now, else the id that already holds it."""
        for _ in range(3):  # a claim released between our insert and our read: try again
            try:
                await self._requests.insert_one(
                    {"_id": key, "id": ident, "created_at": datetime.now(UTC)}
                )
                return None
            except DuplicateKeyError:
                holder = await self.holder(key)
                if holder is not None:
                    return holder
        raise InvalidArgument(
            "is being claimed and released concurrently; retry", field="request_id"
        )

    async def holder(self, key: str) -> str | None:
        doc = await self._requests.find_one({"_id": key})
        return str(doc["id"]) if doc else None

    async def release(self, key: str, ident: str) -> None:
        """Give up a claim (its submit failed), if ``ident`` still holds it."""
        await self._requests.delete_one({"_id": key, "id": ident})

    async def run_from_before_claims(self, request_id: str) -> str | None:
        """The run a request id made before claims existed (kept on the run itself)."""
        doc = await self._runs.find_one({"request_id": request_id}, {"run_id": 1})
        return doc["run_id"] if doc else None
