"""The face pipeline's figures of ``python -m bench.run``: ``face`` (warm p50 wall time on
the bundled portrait and a group photo, and its parallel branch against the same steps
in series) and ``face_cache`` (a cache miss against a hit)."""

from __future__ import annotations

import statistics
from typing import Any

import redis

from bench.figures import ms, pct
from bench.stack import ROOT
from clients.sdk import Client
from services.localstack import Cluster

WARM_UP = 6  # face: runs before the measured ones

FACE_SERIAL = {
    "pipeline_id": "bench_face_serial",
    "steps": [
        {
            "step_id": "face_detection",
            "task_id": "face_detection",
            "input_mapping": {"image_path": "$.image_path"},
        },
        {
            "step_id": "attributes",
            "task_id": "face_attribute",
            "depends_on": ["face_detection"],
            "input_mapping": {"image_path": "$.image_path", "faces": "$.face_detection.faces"},
        },
        {
            "step_id": "features",
            "task_id": "face_extractor",
            "depends_on": ["attributes"],
            "input_mapping": {"image_path": "$.image_path", "faces": "$.face_detection.faces"},
        },
        {
            "step_id": "merge",
            "task_id": "face_merge",
            "depends_on": ["features"],
            "input_mapping": {
                "detection": "$.face_detection",
                "attributes": "$.attributes",
                "features": "$.features",
            },
        },
    ],
}


def face(client: Client, count: int) -> dict[str, Any]:
    portrait = client.upload_artifact(ROOT / "tasks" / "data" / "astronaut.jpg")
    group = client.upload_artifact(ROOT / "tests" / "data" / "photos" / "group5.jpg")
    results: dict[str, Any] = {}
    for label, pipeline, uri in (
        ("face_processing_pipeline", "face_processing_pipeline", portrait),
        ("bench_face_serial", "bench_face_serial", portrait),
        ("group_photo_5_faces", "face_processing_pipeline", group),
    ):
        walls, speedups = [], []
        steps: dict[str, list[float]] = {}
        # Warm: six runs first, so that each executor has a worker (started, its models
        # loaded, its first call made) for every step's task; two left some cold (with two
        # executors).
        for i in range(count + WARM_UP):
            run = client.wait(
                client.submit(pipeline=pipeline, input={"image_path": uri}).run_id, 60
            )
            assert run.state == "COMPLETED", run.error
            if i >= WARM_UP:
                summary = run.processing_summary or {}
                walls.append(summary["wall_seconds"])
                speedups.append(summary["parallel_speedup"])
                for step in summary["steps"]:
                    steps.setdefault(step["step_id"], []).append(step["run_seconds"])
        results[label] = {
            "p50_wall_ms": ms(pct(walls, 50)),
            "p50_parallel_speedup": round(statistics.median(speedups), 3),
            "p50_step_ms": {name: ms(pct(times, 50)) for name, times in steps.items()},
        }
    parallel = results["face_processing_pipeline"]["p50_wall_ms"]
    serial = results["bench_face_serial"]["p50_wall_ms"]
    return {
        "runs": count,
        "parallel_p50_wall_ms": parallel,
        "serial_p50_wall_ms": serial,
        "speedup_vs_serial": round(serial / parallel, 3) if parallel else None,
        "group_photo_p50_wall_ms": results["group_photo_5_faces"]["p50_wall_ms"],
        "detail": results,
    }


def face_cache(client: Client, cluster: Cluster, count: int) -> dict[str, Any]:
    """The face pipeline with result caching on: a miss (the cache emptied first: every
    step runs and stores its output) against a hit (the same input again: no step runs)."""
    assert cluster.endpoints is not None
    admin = redis.Redis.from_url(cluster.endpoints.redis_admin_url)
    uri = client.upload_artifact(ROOT / "tasks" / "data" / "astronaut.jpg")
    misses, hits = [], []
    try:
        for i in range(count + 1):  # one warm-up pair
            pair = []
            for _ in ("miss", "hit"):
                run = client.run(
                    pipeline="face_processing_pipeline",
                    input={"image_path": uri},
                    cache=True,
                    timeout=60,
                )
                assert run.state == "COMPLETED", run.error
                pair.append(run)
            miss, hit = pair
            assert not any(s.cached_from for s in miss.steps), "the miss found a cached step"
            assert all(s.cached_from for s in hit.steps), "the hit ran a step"
            if i:
                misses.append((miss.processing_summary or {})["wall_seconds"])
                hits.append((hit.processing_summary or {})["wall_seconds"])
            for key in admin.scan_iter("wtm:cache:*", count=1000):
                admin.delete(key)
    finally:
        admin.close()
    miss_ms, hit_ms = ms(pct(misses, 50)), ms(pct(hits, 50))
    return {
        "runs": count,
        "miss_p50_wall_ms": miss_ms,
        "hit_p50_wall_ms": hit_ms,
        "hit_speedup": round(miss_ms / hit_ms, 1) if hit_ms else None,
    }
