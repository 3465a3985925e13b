"""Outputs over the inline limit (256 KiB by default) go to the object store by reference,
transparently for downstream steps and for clients."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.sdk import Client
from common import refs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
N = 100_000  # 0..99999 as JSON is ~590 KB


@pytest.fixture(scope="module", autouse=True)
def registered(client: Client) -> None:
    for name in ("sequence", "echo"):
        client.register_task(FIXTURES / name)
    client.register_pipelines(
        {
            "pipeline_id": "large_output",
            "steps": [
                {"step_id": "make", "task_id": "sequence", "input_mapping": {"n": "$.n"}},
                {
                    "step_id": "copy",
                    "task_id": "echo",
                    "depends_on": ["make"],
                    "input_mapping": {"values": "$.make.values"},
                },
                {
                    "step_id": "pick",
                    "task_id": "echo",
                    "depends_on": ["make"],
                    "input_mapping": {"fourth": "$.make.values[3]", "sum": "$.make.sum"},
                },
            ],
        }
    )
    client.register_pipelines(
        {
            "pipeline_id": "large_output_conditions",
            "steps": [
                {"step_id": "make", "task_id": "sequence", "input_mapping": {"n": "$.n"}},
                {
                    "step_id": "skipped",
                    "task_id": "echo",
                    "depends_on": ["make"],
                    "input_mapping": {"sum": "$.make.sum"},
                    "skip_if": {"path": "$.make.values[3]", "op": "==", "value": 3},
                },
                {
                    "step_id": "runs",
                    "task_id": "echo",
                    "depends_on": ["make"],
                    "input_mapping": {"sum": "$.make.sum"},
                    "skip_if": [
                        {"path": "$.make.sum", "op": "<", "value": 0},
                        {"path": "$.make.missing", "op": "exists"},
                    ],
                },
            ],
        }
    )


def test_conditions_on_a_large_output_are_decided_without_fetching_it(client: Client) -> None:
    """The executor sends what the conditions read of the output it stores by reference."""
    run_id = client.submit(pipeline="large_output_conditions", input={"n": N}).run_id
    done = client.wait(run_id, timeout=60)
    assert done.state == "COMPLETED", done.error
    steps = {s.step_id: s for s in done.steps}
    raw = {s.step_id: s.output for s in client.get_run(run_id, resolve_refs=False).steps}
    assert refs.ref_uri(raw["make"]) is not None  # it did go by reference
    assert (steps["skipped"].state, steps["skipped"].error) == (
        "SKIPPED",
        "skip_if $.make.values[3] == 3",
    )
    assert steps["runs"].state == "COMPLETED"
    assert steps["runs"].output == {"echo": {"sum": N * (N - 1) // 2}}


def test_a_large_output_reaches_downstream_steps_and_the_client(client: Client) -> None:
    run_id = client.submit(pipeline="large_output", input={"n": N}).run_id
    done = client.wait(run_id, timeout=60)
    assert done.state == "COMPLETED", done.error
    steps = {s.step_id: s for s in done.steps}
    assert steps["make"].output["values"] == list(range(N))
    assert steps["make"].output["sum"] == N * (N - 1) // 2
    # Read through a mapping that indexes into the stored output.
    assert steps["pick"].output == {"echo": {"fourth": 3, "sum": N * (N - 1) // 2}}
    # A large input built from it went to the executor by reference, and came back.
    assert steps["copy"].output == {"echo": {"values": list(range(N))}}


def test_what_the_scheduler_keeps_is_a_small_reference(client: Client) -> None:
    run_id = client.submit(pipeline="large_output", input={"n": N}).run_id
    client.wait(run_id, timeout=60)
    raw = {s.step_id: s.output for s in client.get_run(run_id, resolve_refs=False).steps}
    for step_id in ("make", "copy"):
        uri = refs.ref_uri(raw[step_id])
        assert uri is not None, raw[step_id]
        assert raw[step_id]["bytes"] > refs.DEFAULT_INLINE_MAX_BYTES
        assert len(client.download_artifact(uri)) == raw[step_id]["bytes"]
    assert refs.ref_uri(raw["pick"]) is None  # small outputs stay inline


def test_a_small_output_is_unchanged(client: Client) -> None:
    done = client.wait(client.submit(task="sequence", input={"n": 5}).run_id, timeout=60)
    assert done.state == "COMPLETED", done.error
    assert done.output == {"values": [0, 1, 2, 3, 4], "sum": 10}
