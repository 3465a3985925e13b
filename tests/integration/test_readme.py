"""The README's Python tour (its first ``python`` block) runs as written, against the test
stack: a newcomer who pastes it gets no exception. It runs in a namespace of its own, so what
it registers, pauses and schedules stays there; only the two addresses are the stack's."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from clients import Client, NotFound
from services.localstack import Cluster
from tests.conftest import EXAMPLES, ROOT

README = ROOT / "README.md"
CONFIG = ROOT / "tasks" / "pipelines" / "config_pipeline.json"
ADDRESSES = '"127.0.0.1:50051", "127.0.0.1:50052"'  # as the README writes them
NAMESPACE = "readme"
FACE_TASKS = ("face_detection", "face_attribute", "face_extractor", "face_merge")


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, re.S | re.M)


def test_the_readmes_sdk_tour_runs_as_written(cluster: Cluster, client: Client) -> None:
    tour = python_blocks(README.read_text())[0]
    assert ADDRESSES in tour, "the tour's addresses changed: update ADDRESSES"
    tour = tour.replace(ADDRESSES, f'"{cluster.registry_address}", "{cluster.scheduler_address}"')
    _, key = client.create_api_key("readme admin", "admin", NAMESPACE)
    with Client(cluster.registry_address, cluster.scheduler_address, api_key=key) as team:
        for task in FACE_TASKS:  # what `wtm task register` and `pipeline register` did before
            team.register_task(EXAMPLES / task)
        team.register_pipelines(CONFIG)
        env = {**os.environ, "WTM_API_KEY": key, "WTM_TLS_CA": str(cluster.ca_file)}
        env.pop("WTM_API_KEY_FILE", None)
        done = subprocess.run(
            [sys.executable, "-c", tour],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        # What it did is there: the task it registered, the face run it waited for, and
        # nothing left behind that would stop a newcomer's next run.
        assert "text_sentiment" in {t.task_id for t in team.list_tasks()}
        [face] = team.list_runs(pipeline_id="face_processing_pipeline")
        assert face.state == "COMPLETED"
        assert "'face_id': 0" in done.stdout  # the faces it printed
        queues, _ = team.list_queues()
        assert all(q.pause is None for q in queues)
        with pytest.raises(NotFound):
            team.get_schedule("nightly")
        # The asyncio client's lines (the second block), in a coroutine of their own: its
        # client takes the addresses from the environment, as the README says.
        lines = python_blocks(README.read_text())[1]
        assert lines.startswith("async with AsyncClient() as client:")
        coroutine = "\n".join(f"    {line}" for line in lines.splitlines())
        script = (
            f"import asyncio\nfrom clients import AsyncClient\n\nasync def main():\n{coroutine}\n"
        )
        script += "    print(run.state, run.output)\n\nasyncio.run(main())\n"
        env |= {
            "WTM_REGISTRY_ADDR": cluster.registry_address,
            "WTM_SCHEDULER_ADDR": cluster.scheduler_address,
        }
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        assert done.stdout.startswith("COMPLETED {'sentiment': 'positive'")
