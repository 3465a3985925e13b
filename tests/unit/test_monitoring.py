"""deploy/monitoring: the Prometheus alert rules and the Grafana dashboard parse, every PromQL
expression in them parses (promql-parser, Prometheus's grammar), and every metric they use is
one the scheduler exports — read from a real Prometheus exposition of SchedulerMetrics with
every instrument recorded once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"

EXPOSE = """
import prometheus_client
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider

metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
from services.scheduler.metrics import SchedulerMetrics


class Fleet:
    sessions = {}


class Cache:
    hits, misses = 1, 2


class Run:
    state = "COMPLETED"


m = SchedulerMetrics(Fleet(), Cache())
ended = {"state": "COMPLETED", "task_id": "t", "queued_ms": "1", "started_ms": "2", "ended_ms": "3"}
m.attempt_ended("r:s", ended, "{}")
m.attempt_ended("r:s", {"state": "QUEUED", "task_id": "t"}, "")
m.runs_submitted(1)
m.run_recorded(Run(), {})
m.lease_expired("r:s")
m.history_write_failed()
m.set_queues({"q": (1, 0)}, 0, 1000, {"q": 0}, frozenset({"q"}))
m.clock_offset = 0.002
# The counters of the scheduler's other parts, each counted once.
from collections import defaultdict
from services.scheduler.artifact_sweep import ArtifactSweep
from services.scheduler.history_retention import HistoryRetention
from services.scheduler.schedules import Schedules

collections = defaultdict(lambda: None)
s = Schedules(None, None)
s.started.add(1, {"namespace": "n"})
s.skipped.add(1, {"namespace": "n", "reason": "refused"})
HistoryRetention(collections, 30).deleted.add(1)
from services.common.call_limits import CallLimits
CallLimits(1, service="scheduler").refused.add(1, {"namespace": "n"})
ArtifactSweep(collections, None, None, "r").deleted.add(1, {"namespace": "n"})
print(prometheus_client.generate_latest().decode())
"""


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """The names of every sample the scheduler's metrics expose."""
    text = subprocess.run(
        [sys.executable, "-c", EXPOSE], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("wtm_")
    }


def metric_names(node: Any) -> set[str]:
    """The metric names an expression selects (walking promql-parser's tree)."""
    kind = type(node).__name__
    if kind == "VectorSelector":
        return {node.name}
    if kind == "MatrixSelector":
        return metric_names(node.vector_selector)
    found: set[str] = set()
    for attr in ("lhs", "rhs", "expr", "param"):
        child = getattr(node, attr, None)
        if child is not None:
            found |= metric_names(child)
    for arg in getattr(node, "args", None) or []:
        found |= metric_names(arg)
    return found


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in doc["panels"] for t in p["targets"]]


def test_the_alerts_cover_what_operators_must_hear_of() -> None:
    by_name = {r["alert"]: r for r in rules()}
    assert {
        "WtmQueueHasWorkButNoExecutor",
        "WtmOldestStepTooOld",
        "WtmLeaseExpiriesRising",
        "WtmHistoryWritesFailing",
        "WtmQueuePausedLong",
        "WtmScheduleCannotStartRuns",
        "WtmScheduleTimesMissed",
        "WtmExecutorResting",
    } <= set(by_name)
    for rule in by_name.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_expression_parses_and_uses_only_exported_metrics(
    source: str, exported: set[str]
) -> None:
    exprs = [r["expr"] for r in rules()] if source == "rules" else dashboard_exprs()
    assert exprs
    used: set[str] = set()
    for expr in exprs:
        used |= metric_names(promql_parser.parse(expr))
    assert used, exprs
    missing = used - exported
    assert not missing, f"not exported by the scheduler: {sorted(missing)}"


def test_the_dashboard_shows_the_figures_the_issue_names() -> None:
    text = " ".join(dashboard_exprs())
    for metric in (
        "wtm_queue_depth",
        "wtm_queue_oldest_age_seconds",
        "wtm_dispatch_latency_seconds_bucket",
        "wtm_step_duration_seconds_bucket",
        "wtm_executor_slots",
        "wtm_result_cache_lookups_total",
    ):
        assert metric in text, metric


def test_the_scheduler_exports_the_autoscaling_metrics(exported: set[str]) -> None:
    # What KEDA's ScaledObjects and the HPA in deploy/k8s scale executors on.
    assert {
        "wtm_queue_depth",
        "wtm_queue_oldest_age_seconds",
        "wtm_queue_executors",
        "wtm_queue_paused",
    } <= exported


def test_the_queue_alerts_leave_paused_queues_out() -> None:
    """A paused queue's steps wait by an operator's choice: no alert that no executor takes
    them or that they are old, one that the pause has lasted an hour."""
    by_name = {r["alert"]: r for r in rules()}
    for name in ("WtmQueueHasWorkButNoExecutor", "WtmOldestStepTooOld"):
        assert "unless on (queue)" in by_name[name]["expr"]
        assert "wtm_queue_paused" in metric_names(promql_parser.parse(by_name[name]["expr"]))
    assert by_name["WtmQueuePausedLong"]["for"] == "1h"


def test_the_resting_gauge_counts_the_executors_whose_rest_is_not_over() -> None:
    from types import SimpleNamespace

    from services.scheduler.metrics import SchedulerMetrics

    fleet = SimpleNamespace(
        clock=SimpleNamespace(time=lambda: 100.0),
        sessions={
            "a": SimpleNamespace(resting_until=130.0),
            "b": SimpleNamespace(resting_until=0.0),
            "c": SimpleNamespace(resting_until=99.0),  # over: its heartbeat is on the way
        },
    )
    [observed] = SchedulerMetrics(fleet)._observe_resting(None)  # type: ignore[arg-type]
    assert observed.value == 1
