"""``wtm task create``: a new task directory from a template that registers and runs unchanged."""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[1] / "tasks" / "templates"
TASK_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def template_names() -> list[str]:
    return sorted(p.name for p in TEMPLATES.iterdir() if (p / "task.json.tmpl").exists())


def create_task(task_id: str, template: str, dest: Path, author: str = "") -> Path:
    """Write ``dest/task_id`` from ``template``; refuses to overwrite."""
    if not TASK_ID.match(task_id):
        raise ValueError(f"NAME {task_id!r} must be lower_snake_case (it becomes the task_id)")
    source = TEMPLATES / template
    if template not in template_names():
        raise ValueError(f"unknown template {template!r}; choose one of {template_names()}")
    target = dest / task_id
    if target.exists():
        raise ValueError(f"{target} already exists")
    target.mkdir(parents=True)
    name = task_id.replace("_", " ").capitalize()
    for tmpl in sorted(source.glob("*.tmpl")):
        text = tmpl.read_text()
        for key, value in (("task_id", task_id), ("name", name), ("author", author or "unknown")):
            text = text.replace("{{" + key + "}}", value)
        (target / tmpl.name.removesuffix(".tmpl")).write_text(text)
    return target
