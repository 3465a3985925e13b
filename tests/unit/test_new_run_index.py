"""What the pipeline that queues new runs writes first (``queue_records.index_commands``):
one index entry and one plan hash per submit call, whatever its size; nothing for rebuilt
runs. ``unrecorded_runs.plan_of`` reads a plan back as MongoDB would have stored it."""

from __future__ import annotations

import json

from services.scheduler import keys
from services.scheduler.queue_records import QueuedStep, Submission, index_commands, submit_args
from services.scheduler.stored_plans import plan_doc
from services.scheduler.unrecorded_runs import plan_of


def a_run(run_id: str, index_key: str, done: bool = False) -> Submission:
    steps = [QueuedStep("a", [], ["b"], {"task_id": "t", "queue": "q"}),
             QueuedStep("b", ["a"], [], {"task_id": "u", "queue": "q"})]  # fmt: skip
    fields = {"run_id": run_id, "namespace": "default", "labels": json.dumps({"n": run_id})}
    return Submission(
        run_id,
        fields,
        steps,
        index_key=index_key,
        done={"a": '{"x": 1}'} if done else {},
        done_fields={"a": {"cached_from": "r0"}} if done else {},
    )


def test_a_batch_is_one_entry_and_one_plan_hash_and_a_rebuild_none() -> None:
    batch = [a_run(f"r{i}", "r0") for i in range(3)]
    single, rebuilt = a_run("s1", "s1"), a_run("old", "")
    runs = [*batch, single, rebuilt]
    args = [submit_args(r, 1000, 60) for r in runs]
    commands = index_commands(runs, args, 1000)
    assert [c[:2] for c in commands] == [
        ("HSET", keys.plan("r0")), ("HSET", keys.plan("s1")), ("ZADD", keys.UNRECORDED)
    ]  # fmt: skip
    assert commands[0][2::2] == ("r0", "r1", "r2") and commands[1][2::2] == ("s1",)
    assert commands[2][2:] == (1000, "r0", 1000, "s1")
    assert index_commands([rebuilt], [args[-1]], 1000) == []


def test_a_kept_plan_reads_back_as_the_plan_mongodb_keeps() -> None:
    for run in (a_run("r1", "r1"), a_run("r2", "r2", done=True)):  # fresh; a resume
        [(_, _, *fields)] = index_commands([run], [submit_args(run, 5, 60)], 5)[:1]
        kept = plan_of(fields[1].encode())
        expected = plan_doc(run)
        for step in expected["steps"]:  # what a taken-over step shows rides in its fields
            step["fields"] = {**step["fields"], **run.done_fields.get(step["step_id"], {})}
        for taken in expected.get("taken_over", {}).values():
            taken["shown"] = {}
        assert kept == expected
