"""Several assignments (down) and results (up) in one stream message, when both ends say
they take them, and one per message for an executor that does not (issue 18)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from clients.sdk import Client
from services.localstack import Cluster
from tests.conftest import ROOT
from tests.integration.fake_executor import FakeExecutor
from wtm.v1 import executor_service_pb2 as epb

RUNS = 20


def _task_on_its_own_queue(client: Client, tmp_path: Path, name: str) -> None:
    """The echo fixture under another id, on a queue only the test's fake executor serves."""
    d = tmp_path / name
    shutil.copytree(ROOT / "tests" / "fixtures" / "tasks" / "echo", d)
    manifest = json.loads((d / "task.json").read_text())
    manifest |= {"task_id": name, "name": name, "queue": f"{name}q"}
    (d / "task.json").write_text(json.dumps(manifest))
    client.register_task(d)


def _assignments(fake: FakeExecutor, count: int) -> list[epb.StepAssignment]:
    deadline = time.monotonic() + 30
    while True:
        got = [m.assignment for m in fake.received if m.HasField("assignment")]
        got += [
            a for m in fake.received if m.HasField("assignments") for a in m.assignments.assignments
        ]
        if len(got) >= count:
            return got
        assert time.monotonic() < deadline, f"{len(got)} of {count} assignments came"
        time.sleep(0.05)


def _result(a: epb.StepAssignment) -> epb.StepResult:
    return epb.StepResult(
        ref=a.ref,
        outcome=epb.StepOutcome.STEP_OUTCOME_SUCCEEDED,
        output_json=json.dumps({"echo": json.loads(a.input_json)}),
    )


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one-per-message"])
def test_assignments_and_results_travel_together_only_when_both_ends_say_so(
    cluster: Cluster, client: Client, tmp_path: Path, batched: bool
) -> None:
    name = f"streambatch{int(batched)}"
    _task_on_its_own_queue(client, tmp_path, name)
    key = cluster.key_files["executor"].read_text()
    fake = FakeExecutor(cluster, f"fake-{name}", [f"{name}q"], key, batched_messages=batched)
    try:
        _, run_ids = client.submit_many([{"i": i} for i in range(RUNS)], task=name)
        got = _assignments(fake, RUNS)
        welcome = next(m.welcome for m in fake.received if m.HasField("welcome"))
        assert welcome.batched_messages  # this scheduler takes StepResults
        assert welcome.honours_rests  # and passes over an executor that says it rests
        groups = [
            len(m.assignments.assignments) for m in fake.received if m.HasField("assignments")
        ]
        if batched:  # one submit, one lease round: queued behind the first, sent together
            assert groups and max(groups) > 1, groups
        else:
            assert groups == []
        assert sorted(a.ref.run_id for a in got) == sorted(run_ids)  # each once
        results = [_result(a) for a in got]
        if batched:
            fake.send(epb.ConnectRequest(results=epb.StepResults(results=results)))
        else:
            for r in results:
                fake.send(epb.ConnectRequest(result=r))
        for a in got:
            done = client.wait(a.ref.run_id, timeout=30)
            assert done.state == "COMPLETED", done
            assert done.output == {"echo": json.loads(a.input_json)}
        assert fake.error is None
    finally:
        fake.close()
