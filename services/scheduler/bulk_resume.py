"""Bulk resume (``ResumeRuns``): the runs that FAILED, were CANCELLED or TIMED_OUT and match a
caller's filters, a page at a time, each resumed by the scheduler as a new run that takes
over the steps it completed (Hatchet's bulk replay; ``rerun.py``'s request, with
``SubmitRunRequest.reuse_from``).

Each run is resumed with the request id ``resume/<run id>``, so it is resumed once: a page
called again answers the same new runs. A resume that has itself ended without success is
resumed in turn, following the chain to its newest run (at most ``CHAIN_MAX`` links). A
resume is a submit: up to ``AT_ONCE`` in flight, and the page is smaller than a cancel's."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field

from common.errors import FailedPrecondition, WtmError
from services.common import auth
from services.common.paging import page_size_of
from services.scheduler.bulk_cancel import RunFilter
from services.scheduler.models import Run
from services.scheduler.rerun import rerun_request
from services.scheduler.runs import RunService

RESUMABLE = ["FAILED", "CANCELLED", "TIMED_OUT"]
CHAIN_MAX = 20  # resumes of resumes followed for one run, at most
AT_ONCE = 16


@dataclass
class ResumedPage:
    """What one page did: each run resumed with the run resuming it, each run refused with
    why ("CODE: message"), and the next page's token ("" on the last)."""

    resumed: list[tuple[str, Run]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    next_page_token: str = ""


async def resume_page(
    runs: RunService,
    namespace: str,
    which: RunFilter,
    latest: bool = False,
    page_size: int = 0,
    page_token: str = "",
) -> ResumedPage:
    """Resume one page of the ended-without-success runs of ``namespace`` that ``which``
    matches."""
    which.check("resume")
    namespace = auth.one_namespace(namespace)  # the resumes are submits: into one
    size = page_size_of(page_size, 100, 500)
    found, token = await which.page(runs.store, RESUMABLE, namespace, size, page_token)
    page = ResumedPage(next_page_token=token)
    ids = [r.run_id for r in found]
    for at in range(0, len(ids), AT_ONCE):
        chunk = ids[at : at + AT_ONCE]
        done = await asyncio.gather(*(_resume(runs, namespace, r, latest) for r in chunk))
        for run_id, again in zip(chunk, done, strict=True):
            if isinstance(again, str):
                page.refused.append((run_id, again))
            else:
                page.resumed.append((run_id, dataclasses.replace(again, steps=[])))
    return page


async def _resume(runs: RunService, namespace: str, run_id: str, latest: bool) -> Run | str:
    """The run resuming ``run_id`` (the newest of its chain), or why there is none."""
    try:
        for _ in range(CHAIN_MAX):
            original = await runs.get(run_id, namespace)
            request = rerun_request(original, namespace, latest, request_id=f"resume/{run_id}")
            again, _ = await runs.started(request)
            if again.state not in RESUMABLE:
                return again
            run_id = again.run_id  # its resume ended without success: resume that
        raise FailedPrecondition(f"resumed {CHAIN_MAX} times already")
    except WtmError as exc:  # this one's: the others go on
        return f"{exc.code}: {exc.message}"
