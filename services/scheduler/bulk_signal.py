"""Bulk signal (``SignalRuns``): one signal sent to a step of every unfinished run that matches
a caller's filters, a page at a time (Temporal's batch signal): a reviewer approving a whole
batch of drafts at once.

Each run on a page gets it as ``SignalRun`` would give it (``RunSignals.send``: its checks,
``signal.lua``, the record in MongoDB), up to ``AT_ONCE`` in flight; a run that refuses it (its
step awaits no signal, or had another one) is named with why, and the others go on. The
signal's document is checked once, before any run is looked at. A page called again sends
the same signal again: the runs that took it answer as they did (a signal's repeat from its
sender), so a retried call is safe."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from common.errors import InvalidArgument, WtmError
from services.common import signals
from services.common.paging import page_size_of
from services.scheduler.bulk_cancel import RunFilter
from services.scheduler.run_signals import RunSignals

UNFINISHED = ["PENDING", "QUEUED", "RUNNING"]  # as the history shows them (written behind)
AT_ONCE = 32


@dataclass
class SignaledPage:
    """What one page did: the runs that took the signal, those that refused it with why
    ("CODE: message"), and the next page's token ("" on the last)."""

    signaled: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    next_page_token: str = ""


async def signal_page(
    sender: RunSignals,
    namespace: str,
    step_id: str,
    payload_json: str,
    which: RunFilter,
    page_size: int = 0,
    page_token: str = "",
) -> SignaledPage:
    """Send ``step_id`` the signal ``payload_json`` in one page of the unfinished runs of
    ``namespace`` that ``which`` matches."""
    which.check("signal")
    if not step_id:
        raise InvalidArgument("is required", field="step_id")
    signals.parse_payload(payload_json)  # INVALID_ARGUMENT before any run is looked at
    size = page_size_of(page_size, 100, 500)
    found, token = await which.page(sender.runs.store, UNFINISHED, namespace, size, page_token)
    page = SignaledPage(next_page_token=token)
    ids = [r.run_id for r in found]
    for at in range(0, len(ids), AT_ONCE):
        chunk = ids[at : at + AT_ONCE]
        done = await asyncio.gather(
            *(_signal(sender, namespace, r, step_id, payload_json) for r in chunk)
        )
        for run_id, why in zip(chunk, done, strict=True):
            if why:
                page.refused.append((run_id, why))
            else:
                page.signaled.append(run_id)
    return page


async def _signal(
    sender: RunSignals, namespace: str, run_id: str, step_id: str, payload_json: str
) -> str:
    """Why run ``run_id`` refused the signal, or "" when it took it."""
    try:
        await sender.send(run_id, step_id, payload_json, namespace)
    except WtmError as exc:  # this one's: the others go on
        return f"{exc.code}: {exc.message}"
    return ""
