"""``RunListing``: the execution history a page at a time (ListRuns), filtered by the runs'
documents in MongoDB and, for runs with a step waiting for a signal now, by Redis, which
knows which those are (``wtm:signals``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.common import auth
from services.common.paging import page_size_of
from services.scheduler import run_docs
from services.scheduler.models import Run
from services.scheduler.run_labels import label_pairs
from services.scheduler.run_reader import RunReader
from services.scheduler.run_store import RunStore

# How many waiting steps ``awaiting_signal`` looks at: the runs of the first this many (by
# when their waits end, soonest first) are the ones it can list.
AWAITING_SCAN = 10_000


@dataclass(frozen=True)
class ListFilter:
    """What a page of runs is chosen by: every field given must hold."""

    namespace: str
    state: str = ""
    pipeline_id: str = ""  # "id" or "id@version"
    task_id: str = ""  # likewise
    batch_id: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    awaiting_signal: bool = False  # only runs with a step waiting for a signal now


class RunListing:
    """Pages of runs, newest first, without their steps."""

    def __init__(self, store: RunStore, reader: RunReader) -> None:
        self.store = store
        self.reader = reader

    async def page(self, f: ListFilter, page_size: int, page_token: str) -> tuple[list[Run], str]:
        """A page of the runs ``f`` chooses and the next page's token ("" on the last)."""
        size = page_size_of(page_size, 50, 1000)
        pairs = label_pairs(f.labels)
        filters: dict[str, object] = {
            "state": f.state,
            **run_docs.of_name("pipeline_id", f.pipeline_id),
            **run_docs.of_name("task_id", f.task_id),
            "batch_id": f.batch_id,
        }
        if f.namespace != auth.ALL_NAMESPACES:
            filters["namespace"] = f.namespace
        if f.awaiting_signal:
            waiting = await self.reader.runs_awaiting_signals(AWAITING_SCAN)
            if not waiting:
                return [], ""
            filters["_id"] = {"$in": sorted(waiting)}
        return await self.store.list_runs(
            filters, f.created_after, f.created_before, size, page_token, pairs
        )
