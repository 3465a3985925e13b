"""Bulk cancel (``CancelRuns``): the unfinished runs that match a caller's filters, a page at a
time, cancelled by the scheduler (Temporal's batch cancel, Hatchet's bulk cancel).

A page is read from the history (newest first, as ``ListRuns`` pages), and each run on it is
cancelled as ``CancelRun`` would: a Lua call per run, up to ``AT_ONCE`` in flight. One call
per page, so a team cancelling thousands of runs makes a handful of calls (not one per run,
each counted against its calls a second), and nothing crosses the network per run."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field

from common.errors import InvalidArgument, NotFound
from services.common import auth
from services.common.paging import page_size_of
from services.scheduler import run_docs
from services.scheduler.models import Run
from services.scheduler.run_labels import label_pairs
from services.scheduler.run_store import RunStore
from services.scheduler.runs import RunService

UNFINISHED = ["QUEUED", "RUNNING"]  # as the history shows them (written behind)
AT_ONCE = 32  # cancels in flight at once on one page


@dataclass
class CancelledPage:
    """What one page did: the runs it ended, those that had ended first (as they ended),
    the ids of another key's runs that the caller may not cancel, and the next page's
    token ("" on the last)."""

    cancelled: list[Run] = field(default_factory=list)
    ended: list[Run] = field(default_factory=list)
    not_theirs: list[str] = field(default_factory=list)
    next_page_token: str = ""


@dataclass(frozen=True)
class RunFilter:
    """Which runs a bulk cancel is about: all of what is given; at least one."""

    batch_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    task_id: str = ""
    pipeline_id: str = ""

    def check(self, verb: str) -> None:
        if not (self.batch_id or self.labels or self.task_id or self.pipeline_id):
            raise InvalidArgument(
                f"name a batch, labels, a task or a pipeline: no filter would {verb} every run",
                field="filter",
            )

    async def page(
        self, store: RunStore, states: list[str], namespace: str, size: int, token: str
    ) -> tuple[list[Run], str]:
        """A page of the history's runs in ``states`` of ``namespace`` that it matches, newest
        first, and the next page's token."""
        query = self.query(states, namespace)
        return await store.list_runs(query, None, None, size, token, label_pairs(self.labels))

    def query(self, states: list[str], namespace: str) -> dict[str, object]:
        """The history's query for the runs in ``states`` that it matches (but labels)."""
        found: dict[str, object] = {
            "state": {"$in": states},
            "batch_id": self.batch_id,
            **run_docs.of_name("task_id", self.task_id),
            **run_docs.of_name("pipeline_id", self.pipeline_id),
        }
        if namespace != auth.ALL_NAMESPACES:
            found["namespace"] = namespace
        return found


async def cancel_page(
    runs: RunService,
    namespace: str,
    reason: str,
    which: RunFilter,
    page_size: int = 0,
    page_token: str = "",
) -> CancelledPage:
    """Cancel one page of the unfinished runs of ``namespace`` that ``which`` matches."""
    which.check("cancel")
    size = page_size_of(page_size, 500, 1000)
    found, token = await which.page(runs.store, UNFINISHED, namespace, size, page_token)
    caller = auth.current()
    page = CancelledPage(next_page_token=token)
    anyones = caller.may(auth.Permission.CANCEL_ANY)  # else a submitter's own runs only
    theirs = []
    for run in found:
        if anyones or run.submitted_by == caller.key_id:
            theirs.append(run)
        else:
            page.not_theirs.append(run.run_id)
    for at in range(0, len(theirs), AT_ONCE):
        chunk = theirs[at : at + AT_ONCE]
        done = await asyncio.gather(*(_cancel(runs, r.run_id, reason) for r in chunk))
        for ended_it, after in done:
            if after is not None:
                (page.cancelled if ended_it else page.ended).append(after)
    return page


async def _cancel(runs: RunService, run_id: str, reason: str) -> tuple[bool, Run | None]:
    """Whether this call ended the run, and the run after it (without its steps; None if
    the history's retention deleted it meanwhile)."""
    try:
        run, ended_it = await runs.end(run_id, reason)
    except NotFound:
        return False, None
    return ended_it, dataclasses.replace(run, steps=[])
