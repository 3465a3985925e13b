"""``make demo``: the main job on the local stack, from nothing to a printed result.

Starts the backing servers and the three services, registers the example tasks and
pipelines, uploads the bundled portrait, runs ``face_processing_pipeline`` on it while
showing the run's events live, prints the merged faces, the processing summary and the
lineage, and stops everything (also on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from clients import render
from clients.sdk import Client, RunInfo
from services.localstack import Cluster

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tasks" / "examples"
PIPELINES = ROOT / "tasks" / "pipelines" / "config_pipeline.json"
IMAGE = ROOT / "tasks" / "data" / "astronaut.jpg"


def face_lines(face: dict[str, Any]) -> list[str]:
    x, y, w, h = face["bbox"]
    lines = [
        f"  face {face['face_id']}: box x={x} y={y} {w}x{h}, confidence {face['confidence']:.3f}"
        f"  (source {face['detection']['source']})"
    ]
    d = face["detection"]
    if d.get("landmarks"):
        pose = d["pose"]
        marks = ", ".join(f"{k} ({x:.0f},{y:.0f})" for k, (x, y) in d["landmarks"].items())
        lines += [
            f"    landmarks: {marks}",
            f"    pose: roll {pose['roll_degrees']:+.1f}°, "
            f"yaw {pose['yaw_degrees']:+.1f}° (estimate)",
        ]
    a = face.get("attributes")
    if a:
        eyes = ", ".join(
            f"{side} {'yes' if a['eyes'][side]['found'] else 'no'}"
            for side in ("right", "left")
            if side in a["eyes"]
        )
        smile = a["smile"]
        lines += [
            f"    attributes (source {a['source']}):",
            f"      eyes confirmed: {eyes or 'n/a (not aligned)'}; smile "
            + (f"yes ({smile['score']:.2f})" if smile["detected"] else "no"),
            f"      emotion {a['emotion']['dominant_emotion']} "
            f"({a['emotion']['confidence']:.2f}; {a['emotion']['model']})",
            f"      sharpness {a['sharpness']:.0f} (Laplacian variance), "
            f"brightness {a['brightness']:.2f}",
            *(
                f"      {k}: unavailable — {a[k]['reason']}"
                for k in ("age", "gender")
                if not a[k].get("available", True)
            ),
        ]
    f = face.get("features")
    if f:
        vector = f["feature_vector"]
        head = ", ".join(f"{v:.3f}" for v in vector[:6])
        norm = math.sqrt(sum(v * v for v in vector))
        lines += [
            f"    features (source {f['source']}):",
            f"      embedding {f['feature_dimension']}-D [{head}, …] |v| = {norm:.3f}",
        ]
    return lines


def show(run: RunInfo) -> None:
    console = render.console
    took = (
        (run.ended_at - run.created_at).total_seconds() * 1000
        if run.ended_at and run.created_at
        else 0
    )
    console.print(f"\nRun [bold]{run.run_id}[/] {render.state(run.state)} in {took:.0f} ms")
    if run.state != "COMPLETED":
        console.print(escape(f"  error: {run.error}"))
        return
    out = run.output
    size = out["image_size"]
    console.print(f"  {out['face_count']} face(s) in a {size['width']}x{size['height']} image")
    for face in out["faces"]:
        for line in face_lines(face):
            console.print(escape(line))
    ps = run.processing_summary or {}
    if ps:
        console.print(
            f"\n  processing_summary: wall {ps['wall_seconds'] * 1000:.0f} ms, steps "
            f"{ps['step_seconds_sum'] * 1000:.0f} ms in all, "
            f"parallel speedup {ps['parallel_speedup']:.2f}x"
        )
        for t in ps["steps"]:
            console.print(
                f"    {t['step_id']:<16} queued {t['queued_seconds'] * 1000:6.1f} ms   "
                f"ran {t['run_seconds'] * 1000:6.1f} ms"
            )
    console.print("\n  data_lineage:")
    for source, target in run.lineage:
        console.print(f"    {source} -> {target}")


def dashboard_sees(cluster: Cluster, run_id: str) -> str:
    """The run's state as the dashboard's API reports it (the page shows the same)."""
    import ssl

    import httpx

    reply = httpx.get(
        f"{cluster.gateway_url}/api/v1/runs/{run_id}",
        headers={"Authorization": f"Bearer {cluster.admin_key}"},
        verify=ssl.create_default_context(cafile=str(cluster.ca_file)),
        timeout=10,
    )
    reply.raise_for_status()
    return str(reply.json()["state"])


CONFINED = {
    "isolated": "isolated: its own uid, no network, only its own files",
    "limits": "[red]with resource limits only[/] (not root: as you, on your network)",
}


def run_demo(root: Path, keep: bool | None = None) -> int:
    console = render.console
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop everything on kill, too
    t0 = time.monotonic()
    console.print(
        "[bold]Starting[/] valkey, SeaweedFS S3, nx-27017, registry, scheduler, executor…"
    )
    with Cluster(root, executors=1, slots=2, fresh=True) as cluster:
        console.print(
            f"  up in {time.monotonic() - t0:.1f}s · registry {cluster.registry_address}"
            f" · scheduler {cluster.scheduler_address} · logs {root}/logs"
        )
        with Client(
            cluster.registry_address,
            cluster.scheduler_address,
            api_key=cluster.admin_key,
            tls_ca=str(cluster.ca_file),
        ) as client:
            for task_dir in sorted(p for p in EXAMPLES.iterdir() if (p / "task.json").exists()):
                t = client.register_task(task_dir)
                console.print(f"  registered task {t.task_id}@{t.version} sha256:{t.digest[:12]}")
            for p in client.register_pipelines(PIPELINES):
                console.print(
                    f"  registered pipeline {p.pipeline_id}@{p.version} ({len(p.steps)} steps)"
                )
            uri = client.upload_artifact(IMAGE)
            console.print(f"  uploaded {IMAGE.relative_to(ROOT)} as {uri}", soft_wrap=True)
            console.print("\n[bold]Running[/] face_processing_pipeline")
            run = client.submit(pipeline="face_processing_pipeline", input={"image_path": uri})
            for event in client.watch(run.run_id, timeout=120):
                console.print(render.event_line(event))
            result = client.get_run(run.run_id)
            show(result)
            for e in client.list_executors():  # what it said in its hello
                words = CONFINED.get(e.sandbox, "confined as an older executor does")
                console.print(f"\n  {e.executor_id} ran the task code {words}")
        state = dashboard_sees(cluster, run.run_id)
        console.print(
            f"\n[bold]Dashboard[/] {cluster.gateway_url}/#/runs/{run.run_id} (it shows this run:"
            f" {state})\n  sign in with the key in {cluster.key_files['admin']}; the browser"
            f" will not know the stack's CA ({cluster.ca_file}): accept it or import it"
            f"\n  API docs {cluster.gateway_url}/docs · `wtm health`, `wtm monitor` with the"
            " exports of `wtm stack up`"
        )
        if keep if keep is not None else sys.stdin.isatty():
            console.print("\nEverything keeps running: press Enter (or Ctrl-C) to stop it.")
            with contextlib.suppress(KeyboardInterrupt, EOFError):
                input()
    console.print("\nStopped everything.")
    return 0 if result.state == "COMPLETED" else 1
