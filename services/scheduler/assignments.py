"""What a leased step is sent: its input document (``step_input``: the run's input as it
is, or built from the step's mapping, its upstream outputs and the run parameters its task
accepts, with the lineage edges that say where each field came from) and the assignment
that carries it to an executor (``assignment``, an ``Assignment``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from services.common import fan_out
from services.scheduler import step_inputs
from services.scheduler.queue_records import Leased


@dataclass(frozen=True)
class Assignment:
    """A step attempt to send to an executor."""

    run_id: str
    step_id: str
    attempt: int
    task_id: str
    task_version: str
    digest: str
    entry_point: str
    input_json: str
    timeout_seconds: int
    input_id: str
    output_id: str
    upstream_output_ids: dict[str, str] = field(default_factory=dict)
    input_sources: dict[str, str] = field(default_factory=dict)
    traceparent: str = ""
    lease_id: str = ""
    namespace: str = "default"
    log_level: str = ""  # the task logger's level ("": the task's own)
    call_id: str = ""  # of a dynamic batch: the id its steps share ("": leased alone)
    call_size: int = 0  # how many steps that call has
    proven: bool = False  # its task version's code has started on some executor
    condition_paths: tuple[str, ...] = ()  # where later steps' conditions read its output
    leased_after: int = 0  # its executor's heartbeat heard last before the lease was made


def step_input(leased: Leased) -> tuple[str, list[tuple[str, str]], dict[str, str]]:
    """The input document of a leased step (JSON text), its lineage edges, and the output id
    each mapped field came from: its mapping (or the default input), then the run parameters
    its task accepts. Raises ``MissingValue`` when the step's ``input_mapping`` finds
    nothing to read."""
    spec = json.loads(leased.step.get("mapping") or "{}")
    accepts = json.loads(leased.step.get("accepts") or "[]")
    item = leased.step.get("item")  # an instance of a for_each step: the item it gets
    signal = leased.step.get("signal_json")  # the signal a step awaited (signals.py)
    if not spec and not accepts and item is None and signal is None:  # the run input as it is
        return step_inputs.default_input(leased.run_input_json, leased.dep_outputs), [], {}
    run_input = json.loads(leased.run_input_json)
    output_ids = json.loads(leased.step.get("read_output_ids") or "{}")
    outputs = {k: json.loads(v) for k, v in leased.dep_outputs.items() if v is not None}
    if not spec:
        document = step_inputs.default_document(run_input, leased.dep_outputs)
        edges: list[tuple[str, str]] = []
        sources: dict[str, str] = {}
    else:
        optional = frozenset(json.loads(leased.step.get("optional") or "[]"))
        document, edges, sources = step_inputs.resolve(
            spec,
            set(output_ids),
            run_input,
            outputs,
            output_ids,
            leased.step["input_id"],
            optional,
        )
    if item is not None:
        each = json.loads(leased.step["each"])
        found = fan_out.item_input(document, each, {"": run_input, **outputs}, int(item))
        edges.append(
            step_inputs.item_edge(found, each, int(item), output_ids, leased.step["input_id"])
        )
        if each["source"]:  # (a list in the run's input has no output id)
            sources = {**sources, each["field"]: output_ids[each["source"]]}
    if signal is not None:
        name, input_id = json.loads(leased.step["signal"])["field"], leased.step["input_id"]
        document = {**document, name: json.loads(signal)}
        edges.append(step_inputs.signal_edge(input_id, name))
    document, added = step_inputs.with_parameters(
        document, run_input, leased.step_id, accepts, leased.step["input_id"]
    )
    return json.dumps(document), edges + added, sources


def assignment(
    leased: Leased,
    input_json: str,
    sources: dict[str, str],
    traceparent: str,
    call_size: int,
    proven: bool = False,
    leased_after: int = 0,
) -> Assignment:
    s = leased.step
    return Assignment(
        run_id=leased.run_id,
        step_id=leased.step_id,
        attempt=leased.attempt,
        task_id=s["task_id"],
        task_version=s["task_version"],
        digest=s["digest"],
        entry_point=s["entry_point"],
        input_json=input_json,
        timeout_seconds=int(s["timeout"]),
        lease_id=s.get("lease", ""),
        input_id=s["input_id"],
        output_id=s["output_id"],
        upstream_output_ids=json.loads(s.get("read_output_ids") or "{}"),
        input_sources=sources,
        traceparent=traceparent,
        namespace=s.get("namespace", "default"),
        log_level=s.get("log_level", ""),
        call_id=leased.call if call_size > 1 else "",
        call_size=call_size if call_size > 1 else 0,
        proven=proven,
        condition_paths=tuple(json.loads(paths)) if (paths := s.get("condition_paths")) else (),
        leased_after=leased_after,
    )
