"""How a task's failure becomes its step's error (tasks.base.runtime): what task code can
raise — sys.exit() in code written as a script, an exception whose own str() fails — is a
failed step naming it, and the worker serves on (it used to die: "worker process died (exit
code 0)", and the next step paid for a new worker)."""

from __future__ import annotations

import sys
from typing import Any

from tasks.base.runtime import run_batch, run_once
from tasks.base.task_base import SimpleTask, TaskContext


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this fails")


class Script(SimpleTask):
    def process(self, input_data: dict[str, Any]) -> dict[str, Any]:
        if input_data.get("exit") is not None:
            sys.exit(input_data["exit"])
        if input_data.get("unprintable"):
            raise Unprintable()
        return {"ok": True}

    def process_batch(self, inputs: list[dict[str, Any]]) -> list[Any]:
        sys.exit(3)


def test_sys_exit_in_a_task_is_a_failed_step_naming_it() -> None:
    task = Script(TaskContext())
    for code in (0, 1):
        verdict, error = run_once(task, f'{{"exit": {code}}}')
        assert verdict == "failed" and error.startswith(f"SystemExit: {code} at ")
    assert run_once(task, "{}") == ("ok", '{"ok": true}')  # the same task serves on


def test_an_exception_whose_str_fails_is_still_reported() -> None:
    verdict, error = run_once(Script(TaskContext()), '{"unprintable": true}')
    assert verdict == "failed" and error.startswith("Unprintable: <its str() failed> at ")


def test_sys_exit_in_a_batch_call_fails_each_input_of_it() -> None:
    verdicts = run_batch(Script(TaskContext()), ["{}", "{}"])
    assert [v[0] for v in verdicts] == ["failed", "failed"]
    assert all(v[1].startswith("SystemExit: 3") for v in verdicts)
