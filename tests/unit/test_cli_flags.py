"""``wtm``'s own options, told apart from a command's option of the same name: ``wtm run
signal RUN STEP --json DOC`` sends a document and prints its errors for people, while ``wtm
--json ...`` prints them as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.cli import global_flags, main


def test_only_the_options_before_the_command_are_wtms_own() -> None:
    assert global_flags(["--json", "run", "list"]) == {"--json"}
    assert global_flags(["run", "signal", "R", "s", "--json", "{}"]) == set()
    assert global_flags(["-n", "team", "--debug", "run", "get", "R"]) == {"-n", "--debug"}
    assert global_flags(["--namespace", "--json", "run", "list"]) == {"--namespace"}  # its value
    assert global_flags(["--namespace=t", "--json", "run"]) == {"--namespace", "--json"}


def test_a_commands_own_json_option_does_not_make_errors_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["run", "signal", "RUN", "step", "--json", "[1]"])  # refused before any call
    assert done.value.code == 2
    said = capsys.readouterr().err
    assert "Invalid value for --json: must be a JSON object" in said, said
    assert not said.startswith("{")
    with pytest.raises(SystemExit) as done:
        main(["--json", "run", "signal", "RUN", "step", "--json", "[1]"])
    error = json.loads(capsys.readouterr().err)["error"]
    assert (error["code"], error["exit_code"]) == ("USAGE", 2)
    assert "must be a JSON object" in error["message"]


def test_a_pipeline_config_is_named_after_the_command_or_by_json_config_but_not_two(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    one, other = tmp_path / "one.json", tmp_path / "other.json"
    for path in (one, other):
        path.write_text("{}")
    for command in ("register", "validate"):
        with pytest.raises(SystemExit) as done:  # refused before any call
            main(["--json", "pipeline", command, str(one), "--json-config", str(other)])
        assert done.value.code == 2
        error = json.loads(capsys.readouterr().err)["error"]
        assert (error["code"], error["exit_code"]) == ("USAGE", 2), error
        assert "name two files" in error["message"] and "one.json" in error["message"]
