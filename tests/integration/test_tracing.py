"""One trace per run across registry, scheduler and executor, exported over OTLP to an
in-process receiver; the scheduler's Prometheus endpoint; JSON logs.

This module starts its own stack with tracing on (the session's runs with it off).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clients.sdk import Client
from services.localstack import Cluster
from services.localstack.otlp_receiver import Receiver
from services.localstack.processes import free_port
from tests.conftest import EXAMPLES, ROOT, run_cli
from tests.waiting import eventually


@dataclass
class Traced:
    cluster: Cluster
    receiver: Receiver
    metrics_port: int


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    receiver = Receiver()
    port = receiver.start()
    metrics_port = free_port()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "WTM_METRICS_PORT": str(metrics_port),
        "WTM_LOG_FORMAT": "json",
    }
    try:
        with Cluster(tmp_path_factory.mktemp("traced"), executors=1, slots=2, env=env) as c:
            yield Traced(c, receiver, metrics_port)
    finally:
        receiver.stop()


@pytest.fixture(scope="module")
def face_run(traced: Traced) -> Any:
    c = traced.cluster
    with Client(
        c.registry_address, c.scheduler_address, api_key=c.admin_key, tls_ca=str(c.ca_file)
    ) as client:
        for name in ("face_detection", "face_attribute", "face_extractor", "face_merge"):
            client.register_task(EXAMPLES / name)
        client.register_pipelines(ROOT / "tasks" / "pipelines" / "config_pipeline.json")
        uri = client.upload_artifact(ROOT / "tasks" / "data" / "astronaut.jpg")
        run = client.submit(pipeline="face_processing_pipeline", input={"image_path": uri})
        done = client.wait(run.run_id, timeout=120)
    assert done.state == "COMPLETED", done.error
    assert done.trace_id and done.trace_id == run.trace_id
    steps = len(done.steps)

    def all_exported() -> bool:  # spans arrive in batches from three services
        spans = traced.receiver.of(done.trace_id)
        names = [s.name for s in spans]
        return (
            "run face_processing_pipeline" in names
            and sum(n.startswith("step ") for n in names) == steps
            and sum(n.startswith("execute ") for n in names) == steps
            and names.count("process()") == steps
            and names.count("load package") == steps
            and "start worker + setup()" in names
            and any("Download" in n for n in names)
        )

    eventually(all_exported, 30, "every span of the run")
    return done


def test_one_trace_spans_registry_scheduler_and_executor(traced: Traced, face_run: Any) -> None:
    spans = traced.receiver.of(face_run.trace_id)
    assert {s.service for s in spans} >= {"wtm-registry", "wtm-scheduler", "wtm-executor"}


def test_the_trace_has_the_shape_of_the_run(traced: Traced, face_run: Any) -> None:
    spans = traced.receiver.of(face_run.trace_id)
    by_id = {s.span_id: s for s in spans}
    [submit] = [s for s in spans if s.name.endswith("SchedulerService/SubmitRun")]
    [run] = [s for s in spans if s.name == "run face_processing_pipeline"]
    assert run.parent_id == submit.span_id
    assert run.attributes["wtm.run_id"] == face_run.run_id
    # Every run, step and execution span names its namespace: an operator finds a team's.
    assert run.attributes["wtm.namespace"] == "default"
    steps = [s for s in spans if s.name.startswith("step ")]
    assert sorted(s.attributes["wtm.step_id"] for s in steps) == sorted(
        st.step_id for st in face_run.steps
    )
    for step in steps:
        assert step.parent_id == run.span_id
        assert step.attributes["wtm.state"] == "COMPLETED"
        assert step.attributes["wtm.executor_id"] == "executor-1"
        [execute] = [s for s in spans if s.parent_id == step.span_id]
        assert execute.name == f"execute {step.attributes['wtm.task_id']}"
        assert execute.service == "wtm-executor"
        assert step.attributes["wtm.namespace"] == execute.attributes["wtm.namespace"] == "default"
        children = {s.name for s in spans if s.parent_id == execute.span_id}
        assert {"load package", "process()"} <= children
    # The first run of each task version on a fresh executor starts its worker.
    assert any(s.name == "start worker + setup()" for s in spans)
    # A registry call made while executing hangs under that execution.
    downloads = [s for s in spans if s.service == "wtm-registry" and "Download" in s.name]
    assert downloads and all(by_id[d.parent_id].service == "wtm-executor" for d in downloads)


def test_span_lineage_matches_the_runs_lineage(traced: Traced, face_run: Any) -> None:
    spans = traced.receiver.of(face_run.trace_id)
    steps = {s.attributes["wtm.step_id"]: s for s in spans if s.name.startswith("step ")}
    expected = [f"{a} -> {b}" for a, b in face_run.lineage]
    assert sorted(e for s in steps.values() for e in s.attributes.get("wtm.lineage", [])) == (
        sorted(expected)
    )
    [run] = [s for s in spans if s.name.startswith("run ")]
    assert run.attributes["wtm.lineage"] == expected
    # The merge step links to the attempts whose outputs it read.
    merge = steps["merge"]
    assert {steps["attributes"].span_id, steps["features"].span_id} <= set(merge.links)
    assert set(merge.links) <= {s.span_id for name, s in steps.items() if name != "merge"}


def test_no_spans_and_no_trace_id_when_export_is_off(traced: Traced, client: Client) -> None:
    client.register_task(ROOT / "tests" / "fixtures" / "tasks" / "echo")  # the session's stack
    plain = client.wait(client.submit(task="echo", input={"x": 1}).run_id, 60)
    assert plain.state == "COMPLETED" and plain.trace_id == ""
    with traced.receiver.lock:
        seen = {s.attributes.get("wtm.run_id") for s in traced.receiver.spans}
    assert plain.run_id not in seen


def scraped(traced: Traced) -> dict[str, float]:
    """The scheduler's samples as Prometheus scrapes them: ``name{labels}`` -> value."""
    url = f"http://127.0.0.1:{traced.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("wtm_"):
            name_labels, _, value = line.rpartition(" ")
            samples[name_labels] = float(value)
    return samples


def test_metrics_are_served_for_prometheus(traced: Traced, face_run: Any) -> None:
    samples = scraped(traced)

    def found(samples: dict[str, float], name: str, **labels: str) -> list[float]:
        return [
            v
            for k, v in samples.items()
            if k.startswith(name + "{") and all(f'{a}="{b}"' in k for a, b in labels.items())
        ]

    def value(name: str, **labels: str) -> float:
        values = found(samples, name, **labels)
        assert values, f"no {name} {labels} in {sorted(samples)}"
        return sum(values)

    assert value("wtm_runs_submitted_total") >= 1
    assert value("wtm_runs_finished_total", state="COMPLETED") >= 1
    assert value("wtm_step_attempts_total", state="COMPLETED", task="face_detection") >= 1
    assert value("wtm_step_duration_seconds_count", task="face_merge") >= 1
    # Buckets in seconds, 1 ms to 1 h: a face step (tens to hundreds of ms) is not under
    # 5 ms, and it is under 1 h.
    count = value("wtm_step_duration_seconds_count", task="face_detection")
    assert value("wtm_step_duration_seconds_bucket", task="face_detection", le="0.001") == 0
    assert value("wtm_step_duration_seconds_bucket", task="face_detection", le="0.005") < count
    assert value("wtm_step_duration_seconds_bucket", task="face_detection", le="3600.0") == count
    assert (
        value("wtm_executor_slots", state="free") + value("wtm_executor_slots", state="busy") == 2
    )
    assert value("wtm_queue_depth", queue="default") >= 0
    # Runs queued or running per namespace, as the scripts count them, read once a second:
    # the face run may have ended before the first read since it was submitted.
    unfinished = eventually(
        lambda: found(scraped(traced), "wtm_namespace_unfinished_runs", namespace="default"),
        what="the default namespace's unfinished runs in the metrics",
    )
    assert unfinished[0] >= 0


def test_a_paused_queue_is_reported_for_the_autoscalers_and_alerts_to_leave_out(
    traced: Traced, face_run: Any
) -> None:
    """``wtm_queue_paused`` is 1 for a queue an operator paused — one with no work and no
    executor too — and 0 for the others; a resume sets it back within the reaper's second
    (KEDA's query and the alerts in deploy/ leave such queues out)."""
    c = traced.cluster

    def paused(queue: str) -> float | None:
        found = [
            v
            for k, v in scraped(traced).items()
            if k.startswith("wtm_queue_paused{") and f'queue="{queue}"' in k
        ]
        return found[0] if found else None

    with Client(
        c.registry_address, c.scheduler_address, api_key=c.admin_key, tls_ca=str(c.ca_file)
    ) as client:
        client.pause_queue("metrics-held", reason="swap the model")
        try:
            eventually(lambda: paused("metrics-held") == 1, what="the pause in the metrics")
            assert paused("default") == 0
        finally:
            assert client.resume_queue("metrics-held")
        eventually(lambda: not paused("metrics-held"), what="the resume in the metrics")


def test_logs_are_json_with_run_and_trace_ids(traced: Traced, face_run: Any) -> None:
    log = Path(traced.cluster.root / "logs" / "scheduler.log").read_text().splitlines()
    records = [json.loads(line) for line in log if line.startswith("{")]
    assert records and all({"time", "level", "service", "message"} <= r.keys() for r in records)
    assert all(r["service"] == "scheduler" for r in records)


def test_every_run_following_cli_command_works_with_tracing_on(
    traced: Traced,
    face_run: Any,  # first: its trace must show the package's download and the worker's start
) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT set, as the README says to do for Jaeger, the CLI
    traces its calls; following a run's stream must still end cleanly."""
    c = traced.cluster
    otel = {k: v for k, v in c.extra_env.items() if k.startswith("OTEL_")}
    run_cli(c, "task", "register", str(EXAMPLES / "text_sentiment"), env=otel)
    submitted = run_cli(
        c, "--json", "run", "submit", "text_sentiment", '{"text": "great"}', "--wait", env=otel
    )
    run_id = json.loads(submitted.stdout)["run_id"]
    watched = run_cli(c, "run", "watch", run_id, env=otel)
    assert "COMPLETED" in watched.stdout
    for name in ("face_detection", "face_attribute", "face_extractor", "face_merge"):
        run_cli(c, "task", "register", str(EXAMPLES / name), env=otel)
    run_cli(c, "pipeline", "register", env=otel)  # the documented config_pipeline.json
    image = str(ROOT / "tasks" / "data" / "astronaut.jpg")
    ran = run_cli(
        c, "pipeline", "run", "face_processing_pipeline", f'{{"image_path": "{image}"}}', env=otel
    )
    assert "COMPLETED" in ran.stdout and "Traceback" not in ran.stderr


def test_the_cli_shows_the_trace_id(traced: Traced, face_run: Any) -> None:
    c = traced.cluster
    out = run_cli(c, "run", "get", face_run.run_id).stdout
    assert f"trace {face_run.trace_id}" in out


def test_each_step_of_a_dynamic_batch_has_its_own_execution_span(traced: Traced) -> None:
    c = traced.cluster
    with Client(
        c.registry_address, c.scheduler_address, api_key=c.admin_key, tls_ca=str(c.ca_file)
    ) as client:
        client.register_task(EXAMPLES / "speech_activity")
        uri = client.upload_artifact(ROOT / "tasks" / "data" / "speech.wav")
        _, run_ids = client.submit_many([{"audio_path": uri}] * 4, task="speech_activity")
        runs = [client.wait(r, timeout=120) for r in run_ids]
    assert all(r.state == "COMPLETED" and r.trace_id for r in runs)

    def executions() -> list[Any]:  # each run's step span, and the execution span under it
        found = []
        for r in runs:
            spans = traced.receiver.of(r.trace_id)
            steps = [
                s
                for s in spans
                if s.name.startswith("step ") and s.attributes.get("wtm.run_id") == r.run_id
            ]
            found += [s for s in spans if steps and s.parent_id == steps[0].span_id]
        return found

    eventually(lambda: len(executions()) == 4, timeout=20, what="4 execution spans")
    spans = executions()
    assert {s.name for s in spans} == {"execute speech_activity"}
    calls = [s for s in spans if s.attributes.get("wtm.call_size", 1) > 1]
    assert calls, "the four runs were not batched"
    assert len({s.attributes["wtm.call_id"] for s in calls}) == 1
    assert {s.attributes["wtm.run_id"] for s in spans} == {r.run_id for r in runs}
    for s in calls:  # the one call, under each step's own execution
        children = [x for x in traced.receiver.of(s.trace_id) if x.parent_id == s.span_id]
        assert [x.name for x in children] == ["process_batch()"]


def test_each_run_of_a_batch_is_a_trace_of_its_own_linked_to_the_submit(
    traced: Traced,
) -> None:
    """One trace per run, as a workflow engine gives (so a sampling ratio samples runs, not
    whole batches): a SubmitRuns call without a trace of the client's makes each run the root
    of its own trace, with a link to the call's span. (In a namespace of its own, which
    its spans name.)"""
    c = traced.cluster
    with Client(
        c.registry_address,
        c.scheduler_address,
        api_key=c.admin_key,
        tls_ca=str(c.ca_file),
        namespace="team-traced",
    ) as client:
        client.register_task(ROOT / "tests" / "fixtures" / "tasks" / "echo")
        _, run_ids = client.submit_many([{"message": str(i)} for i in range(3)], task="echo")
        runs = [client.wait(r, timeout=60) for r in run_ids]
    assert all(r.state == "COMPLETED" for r in runs)
    assert len({r.trace_id for r in runs}) == 3 and all(r.trace_id for r in runs)

    def run_spans() -> list[Any]:
        return [s for r in runs for s in traced.receiver.of(r.trace_id) if s.name == "run echo"]

    def executions() -> list[Any]:
        return [s for r in runs for s in traced.receiver.of(r.trace_id) if s.name == "execute echo"]

    eventually(lambda: len(run_spans()) == len(executions()) == 3, timeout=20, what="3 runs' spans")
    submits = [s for s in traced.receiver.spans if s.name.endswith("SchedulerService/SubmitRuns")]
    for span in run_spans():
        assert span.parent_id == ""  # the root of its trace
        assert span.attributes["wtm.namespace"] == "team-traced"
        assert len(span.links) == 1 and span.links[0] in {s.span_id for s in submits}
        steps = [s for s in traced.receiver.of(span.trace_id) if s.name.startswith("step ")]
        assert [s.parent_id for s in steps] == [span.span_id]
        assert steps[0].attributes["wtm.namespace"] == "team-traced"
        executes = [s for s in traced.receiver.of(span.trace_id) if s.name == "execute echo"]
        assert [s.attributes["wtm.namespace"] for s in executes] == ["team-traced"]
