"""The gateway's JSON shapes, made from the SDK's types: what the gateway answers must be
writable as JSON whatever a run recorded."""

from __future__ import annotations

import dataclasses
import json

from clients.types import RunInfo, State, StepInfo
from services.gateway import models as m


def test_a_run_recorded_with_a_lone_surrogate_is_answered_not_a_500() -> None:
    """A run submitted with `{"text": "\\ud800"}` before submits refused it made the whole runs
    list a 500 (pydantic could not write it as UTF-8): its input and output are answered with
    U+FFFD in its place, and every other run as it is."""
    step = StepInfo("s", "t", "1.0.0", State.COMPLETED, 1, {"y": "b\udfff"}, "", "", None, None)
    bad = RunInfo(
        "r" * 32, State.COMPLETED, "t", "", {"text": "a\ud800"}, {"y": "b\udfff"}, "", 5,
        steps=[step],
    )  # fmt: skip
    good = dataclasses.replace(bad, run_id="g" * 32, input={"text": "ü😀"}, output={}, steps=[])
    page = m.RunPage(runs=[m.of(m.Run, bad), m.of(m.Run, good)], next_page_token="")
    written = json.loads(page.model_dump_json())
    assert written["runs"][0]["input"]["text"].startswith("a\ufffd")
    assert written["runs"][0]["output"]["y"].startswith("b\ufffd")
    assert written["runs"][0]["steps"][0]["output"]["y"].startswith("b\ufffd")
    assert written["runs"][1]["input"] == {"text": "ü😀"}
