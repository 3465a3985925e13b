"""``SignalRecords``: the signals runs' steps got (``run_signals.py``), kept on their runs'
documents in MongoDB as ``signal:<step id>`` (JSON text of the document, who sent it and
when): a run Redis lost is rebuilt with them (``history.py``, through ``signal_fields``,
and with its waits timed from when they began: ``wait_starts``),
and a run that resumes another starts its steps with the old run's (``runs.py``)."""

from __future__ import annotations

import json
from typing import Any

PREFIX = "signal:"  # a run document's field per signalled step: PREFIX + step id


def signal_fields(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The step fields (``signal_json``, ``signaled_by``) of the signals a run's document
    keeps, by step id: what its steps start with when it is rebuilt or resumed."""
    found = {}
    for key, value in doc.items():
        if key.startswith(PREFIX) and isinstance(value, str):
            kept = json.loads(value)
            found[key[len(PREFIX) :]] = {"signal_json": kept["document"], "signaled_by": kept["by"]}
    return found


def wait_starts(
    steps: list[dict[str, Any]],
    signaled: dict[str, dict[str, str]],
    ended_ms: dict[str, int],
    created_ms: int,
) -> dict[str, dict[str, str]]:
    """When each step of a rebuilt run's plan (``steps``) that awaits a signal it has not had
    began to wait, as the run's records tell: once its dependencies had all ended
    (``ended_ms``, by step id), and not before the run's submit (``created_ms``; a step with
    no dependency waited from there). As the step field ``await_from``, from which its wait
    is timed again (``lib.lua``'s ``await_signal``): a wait does not start over when Redis
    loses the run. A step with a dependency the records have no end of waits from its
    rebuild."""
    found = {}
    for s in steps:
        step_id, deps = s["step_id"], s["deps"]
        if "signal" in s["fields"] and step_id not in signaled and all(d in ended_ms for d in deps):
            since = max([created_ms, *(ended_ms[d] for d in deps)])
            found[step_id] = {"await_from": str(since)}
    return found


class SignalRecords:
    """The signals of runs' steps, on the runs' documents."""

    def __init__(self, runs: Any) -> None:
        self._runs = runs  # the "runs" collection (pymongo's asyncio client)

    async def add(self, run_id: str, step_id: str, document: str, by: str, at_ms: int) -> None:
        kept = json.dumps({"document": document, "by": by, "at_ms": at_ms})
        await self._runs.update_one({"_id": run_id}, {"$set": {PREFIX + step_id: kept}})

    async def read(self, run_id: str) -> dict[str, dict[str, str]]:
        """The step fields of the signals run ``run_id`` got, by step id."""
        return signal_fields(await self._runs.find_one({"_id": run_id}) or {})
