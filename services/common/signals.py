"""A pipeline step's ``await_signal``: once its dependencies are done, the step waits for a
signal sent to it from outside the run — a person's approval, another system's answer — and
its task gets the signal's JSON document as one input field (Hatchet's ``wait_for`` a user
event, Temporal's signals, Argo's ``suspend`` and ``resume``).

``{"step_id": "publish", "task_id": "post", "depends_on": ["caption"],
"await_signal": {"field": "approval", "timeout_seconds": 86400}}`` leaves ``publish``
waiting once ``caption`` has completed, until ``wtm run signal RUN publish --json
'{"approved": true, "by": "ana"}'`` (``SignalRun``); then it is queued, and its task's input
holds ``approval``: that document. A signal sent before the step is ready is kept and taken
when it is (Temporal buffers signals too); a second signal to the same step is refused. No
signal within ``timeout_seconds`` (default a day, at most thirty) ends the step, and its run,
TIMED_OUT — or, with ``"on_timeout": "continue"``, the step runs without it, its task's input
lacking the field (Argo's ``suspend`` with a ``duration``, Hatchet's ``wait_for`` a sleep or an
event, whichever comes first: a wait a signal may cut short).

The registry checks it (``parse``); the scheduler gives the step its ``signal`` field
(``lua_fields``); ``lib.lua``'s ``make_ready`` leaves the step waiting, ``signal.lua`` takes a
signal and ``expire_signals.lua`` times a wait out; leasing puts the document in the task's
input (``services/scheduler/step_inputs.py``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from common import jsondoc
from common.errors import InvalidArgument

FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
DEFAULT_TIMEOUT_SECONDS = 86_400
MAX_TIMEOUT_SECONDS = 30 * 86_400  # as a run's run_timeout
MAX_PAYLOAD_BYTES = 64 * 1024  # a signal is an answer, not a data set: artifacts carry data
KEYS = {"field", "timeout_seconds", "on_timeout"}
ON_TIMEOUT = ("fail", "continue")  # what a wait that runs out does: the first, by default


@dataclass(frozen=True)
class AwaitSignal:
    """The input field the signal's document is given as, and how long the step waits."""

    field: str
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    on_timeout: str = "fail"  # or "continue": the step runs without the signal

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"field": self.field, "timeout_seconds": self.timeout_seconds}
        if self.on_timeout != "fail":
            found["on_timeout"] = self.on_timeout
        return found

    def lua_fields(self) -> str:
        """As the scripts read it (the step's ``signal`` field): the field, the wait in ms,
        and ``continue`` when a wait that runs out lets the step run without the signal."""
        found: dict[str, Any] = {"field": self.field, "timeout_ms": self.timeout_seconds * 1000}
        if self.on_timeout == "continue":
            found["continue"] = True
        return json.dumps(found)


def parse(doc: Any, mapped: set[str], where: str) -> AwaitSignal:
    """A step's ``await_signal``, checked: its ``field`` an input field name that the step's
    ``input_mapping`` (``mapped``) does not also map, its ``timeout_seconds`` from 1 to
    ``MAX_TIMEOUT_SECONDS``. Errors name ``where``."""
    if not isinstance(doc, dict):
        raise InvalidArgument(
            'must be an object {"field": "approval", "timeout_seconds": 86400}', field=where
        )
    unknown = sorted(set(doc) - KEYS)
    if unknown:
        known = ", ".join(sorted(KEYS))
        raise InvalidArgument(f"unknown key; known: {known}", field=f"{where}.{unknown[0]}")
    name = doc.get("field")
    if not isinstance(name, str) or not FIELD.match(name):
        raise InvalidArgument(
            f"must name the input field the signal is given as, got {name!r}",
            field=f"{where}.field",
        )
    if name in mapped:
        raise InvalidArgument(
            f"{name!r} is also in input_mapping; the signal is given as this field",
            field=f"{where}.field",
        )
    timeout = doc.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int)
        or not 1 <= timeout <= MAX_TIMEOUT_SECONDS
    ):
        raise InvalidArgument(
            f"must be an integer from 1 to {MAX_TIMEOUT_SECONDS}, got {timeout!r}",
            field=f"{where}.timeout_seconds",
        )
    on_timeout = doc.get("on_timeout", "fail")
    if on_timeout not in ON_TIMEOUT:
        raise InvalidArgument(
            f"must be one of {', '.join(ON_TIMEOUT)}, got {on_timeout!r}",
            field=f"{where}.on_timeout",
        )
    return AwaitSignal(name, timeout, on_timeout)


def of_json(doc: dict[str, Any]) -> AwaitSignal | None:
    """An ``await_signal`` as the registry stored it (checked when it was registered)."""
    if not doc:
        return None
    timeout = int(doc.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS))
    return AwaitSignal(str(doc["field"]), timeout, str(doc.get("on_timeout", "fail")))


def parse_payload(text: str) -> str:
    """A signal's document, checked (INVALID_ARGUMENT naming ``payload_json``): a JSON object
    of at most ``MAX_PAYLOAD_BYTES``; returned as compact JSON text."""
    if len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise InvalidArgument(
            f"is over {MAX_PAYLOAD_BYTES} bytes; put data in an artifact and send its URI",
            field="payload_json",
        )
    doc = jsondoc.loads(text or "{}", field="payload_json")
    if not isinstance(doc, dict):
        raise InvalidArgument("must be a JSON object", field="payload_json")
    return json.dumps(doc, separators=(",", ":"))


def schema_before(schema: dict[str, Any], wait: AwaitSignal | None) -> dict[str, Any]:
    """A task's input schema with the field of the signal its step awaits (``wait``) neither
    required nor described: what a first step's input is checked against at submit, before
    any signal came."""
    if wait is None or not isinstance(schema, dict):
        return schema
    name = wait.field
    out = dict(schema)
    if isinstance(out.get("required"), list):
        out["required"] = [r for r in out["required"] if r != name]
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: v for k, v in out["properties"].items() if k != name}
    return out
