"""``SignalRecords``: the signals runs' steps got (``run_signals.py``), kept on their runs'
documents in MongoDB as ``signal:<step id>`` (JSON text of the document, who sent it and
when): a run Redis lost is rebuilt with them (``history.py``, through ``signal_fields``),
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
