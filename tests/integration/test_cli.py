"""The wtm command line, driven as a user would, against the session's services."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from services.localstack import Cluster
from tests.conftest import ROOT, run_cli

FIXTURES = ROOT / "tests" / "fixtures"


def wtm_json(cluster: Cluster, *args: str) -> Any:
    return json.loads(run_cli(cluster, "--json", *args).stdout)


@pytest.mark.parametrize(
    ("template", "given", "expected"),
    [
        ("simple", {"text": "three little words"}, {"characters": 18, "words": 3}),
        ("ml", {"features": [9, 11]}, {"label": "large", "distance": 1.414214}),
        ("basic", {"a": 1, "b": "x"}, {"fields": {"a": "int", "b": "str"}, "calls": 1}),
        (
            "batching",
            {"features": [9, 11]},
            {"label": "large", "distance": 1.414214, "batch_size": 1},  # a lone step
        ),
    ],
)
def test_a_created_task_tests_registers_and_runs_unchanged(
    cluster: Cluster, tmp_path: Path, template: str, given: dict[str, Any], expected: dict[str, Any]
) -> None:
    name = f"my_{template}_task"
    run_cli(
        cluster,
        "task",
        "create",
        name,
        "--template",
        template,
        "--author",
        "Ada",
        "--dir",
        str(tmp_path),
    )
    path = tmp_path / name
    assert json.loads((path / "task.json").read_text())["author"] == "Ada"
    assert wtm_json(cluster, "task", "test", str(path), json.dumps(given)) == expected
    [registered] = wtm_json(cluster, "task", "register", str(path))
    assert registered["task_id"] == name
    run = wtm_json(cluster, "run", "submit", name, json.dumps(given))
    assert (run["state"], run["output"]) == ("COMPLETED", expected)


def test_task_test_fetches_a_registered_task_by_id(cluster: Cluster) -> None:
    run_cli(cluster, "task", "register", str(ROOT / "tasks" / "examples"))
    out = wtm_json(cluster, "task", "test", "text_sentiment", '{"text": "a wonderful day"}')
    assert out["sentiment"] == "positive"


def test_task_test_reports_a_fatal_input_error(cluster: Cluster) -> None:
    result = run_cli(
        cluster,
        "task",
        "test",
        str(ROOT / "tasks" / "examples" / "text_sentiment"),
        "{}",
        check=False,
    )
    assert result.returncode == 1
    assert "fatal" in result.stderr and "'text'" in result.stderr and not result.stdout


def test_task_test_checks_the_output_schema_as_a_run_does(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "task.py").write_text(
        "from tasks.base.task_base import SimpleTask\n\n\n"
        "class Task(SimpleTask):\n"
        "    def process(self, input_data):\n"
        "        return {'faces': 'not a list'}\n"
    )
    manifest = {
        "task_id": "liar",
        "version": "1.0.0",
        "output_schema": {"type": "object", "properties": {"faces": {"type": "array"}}},
    }
    (tmp_path / "task.json").write_text(json.dumps(manifest))
    result = run_cli(cluster, "task", "test", str(tmp_path), "{}", check=False)
    assert result.returncode == 1
    assert "$.faces: 'not a list' is not of type 'array'" in result.stderr


def test_run_submit_follows_the_run_live(cluster: Cluster) -> None:
    run_cli(cluster, "task", "register", str(ROOT / "tasks" / "examples"))
    out = run_cli(cluster, "run", "submit", "text_sentiment", '{"text": "so good"}').stdout
    assert "RUNNING" in out and out.rstrip().endswith("}")
    assert "COMPLETED" in out and '"sentiment": "positive"' in out


def test_pipeline_commands_round_trip_a_config(cluster: Cluster, tmp_path: Path) -> None:
    run_cli(cluster, "task", "register", str(FIXTURES / "tasks"))
    run_cli(cluster, "task", "register", str(ROOT / "tasks" / "examples"))
    config = str(FIXTURES / "pipelines" / "seed_style.json")
    valid = run_cli(cluster, "pipeline", "validate", "--json-config", config).stdout
    assert "nothing stored" in valid
    run_cli(cluster, "pipeline", "register", "--json-config", config, "--pipeline", "text_pipeline")
    info = run_cli(cluster, "pipeline", "info", "text_pipeline").stdout
    assert "text_sentiment [analyse]" in info and "n <- $.word_count.count" in info
    listed = {p["pipeline_id"] for p in wtm_json(cluster, "pipeline", "list")}
    assert "text_pipeline" in listed
    shown = run_cli(cluster, "pipeline", "show-config", "text_pipeline").stdout
    (tmp_path / "pinned.json").write_text(shown)
    [again] = wtm_json(
        cluster, "pipeline", "register", "--json-config", str(tmp_path / "pinned.json")
    )
    assert again["created"] is False  # the pinned config is the same pipeline


def test_show_config_gives_a_config_that_registers_as_the_same_pipeline(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Every setting a pipeline keeps comes back in `show-config`: a step's own queue, cache,
    retry backoff and skip_if, the pipeline's own global_settings. Re-registered at its version, it
    is the same pipeline (not ALREADY_EXISTS, as when show-config dropped them)."""
    run_cli(cluster, "task", "register", str(FIXTURES / "tasks" / "echo"))
    config = {
        "pipelines": {
            "all_settings": {
                "version": "1.0.0",
                "steps": [
                    {"step_id": "a", "task_id": "echo", "queue": "side", "cache": False,
                     "skip_if": {"path": "$.dry_run", "op": "exists"}},
                    {
                        "step_id": "b", "task_id": "echo", "depends_on": ["a"],
                        "retry_count": 2, "retry_backoff": 3, "retry_backoff_max": 30,
                    },
                ],
                "global_settings": {
                    "max_parallel_tasks": 1, "enable_caching": True, "log_level": "debug",
                    "run_timeout": 600,
                },
            }
        }
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    run_cli(cluster, "pipeline", "register", str(tmp_path / "config.json"))  # CONFIG alone
    info = run_cli(cluster, "pipeline", "info", "all_settings").stdout
    assert "retries 2 waiting 3s doubling to 30s, queue" in info, info
    shown = json.loads(run_cli(cluster, "pipeline", "show-config", "all_settings").stdout)
    pipeline = shown["pipelines"]["all_settings"]
    assert pipeline["global_settings"] == {
        "max_parallel_tasks": 1, "enable_caching": True, "log_level": "DEBUG", "run_timeout": 600
    }  # fmt: skip
    a, b = pipeline["steps"]
    assert (a["queue"], a["cache"], b["retry_backoff"], b["retry_backoff_max"]) == (
        "side", False, 3, 30
    )  # fmt: skip
    assert a["skip_if"] == [{"path": "$.dry_run", "op": "exists"}]
    (tmp_path / "shown.json").write_text(json.dumps(shown))
    [again] = wtm_json(
        cluster, "pipeline", "register", "--json-config", str(tmp_path / "shown.json")
    )
    assert again["created"] is False and again["registered_before"] is True


def test_pipeline_validate_names_every_mistake_of_a_config(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A config's mistakes in its graph and its values are refused at once, all named (exit
    3), through the real registry's gRPC answer; then those of its tasks, all named."""
    run_cli(cluster, "task", "register", str(FIXTURES / "tasks" / "echo"))
    config = {
        "pipeline_id": "three_mistakes",
        "steps": [
            {"step_id": "a", "task_id": "echo", "timeout": 0},
            {"step_id": "b", "task_id": "echo", "depends_on": ["zz"]},
            {"step_id": "c", "task_id": "no_such_task"},
        ],
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    refused = run_cli(
        cluster, "pipeline", "validate", "--json-config", str(tmp_path / "config.json"),
        check=False,
    )  # fmt: skip
    assert refused.returncode == 3, refused.stderr
    assert "pipeline.steps[0].timeout: must be an integer from 1" in refused.stderr
    assert "1 more problem:" in refused.stderr
    assert "pipeline.steps[1].depends_on: unknown step 'zz'" in refused.stderr
    # Its task is looked up only once the config parses: named on the next attempt.
    config["steps"][0]["timeout"] = 5
    config["steps"][1]["depends_on"] = ["a"]
    config["steps"].append({"step_id": "d", "task_id": "nor_this_one"})
    (tmp_path / "config.json").write_text(json.dumps(config))
    as_json = run_cli(
        cluster, "--json", "pipeline", "validate", "--json-config", str(tmp_path / "config.json"),
        check=False,
    )  # fmt: skip
    error = json.loads(as_json.stdout or as_json.stderr)["error"]
    assert error["field"] == "pipeline.steps[2].task_id", error
    assert "pipeline.steps[3].task_id: uses a task that is not registered" in error["message"]


def test_task_list_names_one_tasks_versions(cluster: Cluster, tmp_path: Path) -> None:
    """``wtm task list ID``: the versions of that task (what a missing version's error sends
    the user to look for), and nothing of the others."""
    run_cli(cluster, "task", "register", str(FIXTURES / "tasks" / "word_count"))
    # A task of this test's own: a new version of a shared fixture would become its latest
    # for every other test of the session.
    shutil.copytree(FIXTURES / "tasks" / "echo", tmp_path / "versioned")
    manifest = json.loads((tmp_path / "versioned" / "task.json").read_text())
    for version in ("1.0.0", "1.1.0"):
        changed = manifest | {"task_id": "versioned_echo", "version": version}
        (tmp_path / "versioned" / "task.json").write_text(json.dumps(changed))
        run_cli(cluster, "task", "register", str(tmp_path / "versioned"))
    listed = [
        (t["task_id"], t["version"]) for t in wtm_json(cluster, "task", "list", "versioned_echo")
    ]
    assert sorted(listed) == [("versioned_echo", "1.0.0"), ("versioned_echo", "1.1.0")]
    assert "word_count" in run_cli(cluster, "task", "list").stdout
    assert wtm_json(cluster, "task", "list", "no_such_task") == []
    assert wtm_json(cluster, "pipeline", "list", "no_such_pipeline") == []


def test_an_api_error_is_printed_with_its_code(cluster: Cluster) -> None:
    result = run_cli(cluster, "task", "info", "no_such_task", check=False)
    assert result.returncode == 3  # refused by the services
    assert "NOT_FOUND" in result.stderr and "no_such_task" in result.stderr and not result.stdout


def test_cancelling_a_run_that_ended_says_nothing_was_cancelled(cluster: Cluster) -> None:
    run_cli(cluster, "task", "register", str(ROOT / "tasks" / "examples" / "text_sentiment"))
    run = wtm_json(cluster, "run", "submit", "text_sentiment", '{"text": "fine"}')
    assert run["state"] == "COMPLETED"
    result = run_cli(cluster, "--json", "run", "cancel", run["run_id"])
    assert json.loads(result.stdout)["state"] == "COMPLETED"  # left as it ended
    assert f"run {run['run_id']} had already ended COMPLETED" in result.stderr


def test_a_file_of_inputs_runs_as_one_batch_followed_to_the_end(
    cluster: Cluster, tmp_path: Path
) -> None:
    """`wtm run submit TASK --inputs FILE`: one run per line of a JSON Lines file (blank lines
    skipped; INPUT_JSON the shared rest), one batch, followed to the end, a row per input by
    its line; `--no-wait` prints the batch and its runs; a JSON array works too; a line that
    is not JSON, and an input the task refuses, are named by their line."""
    run_cli(cluster, "task", "register", str(ROOT / "tasks" / "examples" / "text_sentiment"))
    lines = tmp_path / "texts.jsonl"
    lines.write_text('{"text": "I love it"}\n\n{"text": "this is awful"}\n{"text": "fine"}\n')
    batch = wtm_json(cluster, "run", "submit", "text_sentiment", "--inputs", str(lines))
    assert [(r["input"], r["state"]) for r in batch["runs"]] == [
        ("line 1", "COMPLETED"), ("line 3", "COMPLETED"), ("line 4", "COMPLETED"),
    ]  # fmt: skip
    listed = wtm_json(cluster, "run", "list", "--batch", batch["batch_id"])
    assert sorted(r["run_id"] for r in listed) == sorted(r["run_id"] for r in batch["runs"])
    said = {r["run_id"]: r["output"]["sentiment"] for r in listed}
    assert [said[r["run_id"]] for r in batch["runs"]] == ["positive", "negative", "positive"]
    shown = run_cli(cluster, "run", "submit", "text_sentiment", "--inputs", str(lines))
    assert "Batch " in shown.stdout and "line 4" in shown.stdout
    bundled = str(ROOT / "tasks" / "data" / "texts.jsonl")  # the README's command, as it is
    reviews = wtm_json(cluster, "run", "submit", "text_sentiment", "--inputs", bundled)
    assert [r["state"] for r in reviews["runs"]] == ["COMPLETED"] * 5

    array = tmp_path / "texts.json"
    array.write_text('[{"text": "good"}, {}]')
    queued = wtm_json(
        cluster, "run", "submit", "text_sentiment", '{"text": "shared"}',
        "--inputs", str(array), "--no-wait",
    )  # fmt: skip
    assert len(queued["run_ids"]) == 2 and queued["batch_id"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": \n')
    refused = run_cli(cluster, "run", "submit", "text_sentiment", "--inputs", str(bad), check=False)
    assert refused.returncode == 2 and "line 2: not JSON" in refused.stderr
    bad.write_text('{"text": "ok"}\n{"words": "no text"}\n')
    refused = run_cli(cluster, "run", "submit", "text_sentiment", "--inputs", str(bad), check=False)
    assert refused.returncode == 3 and "inputs_json[1]" in refused.stderr
    assert "(input line 2)" in refused.stderr


def test_runs_are_listed_by_when_they_were_created(cluster: Cluster) -> None:
    """`wtm run list --since/--until`: a time ago (2h) or an ISO time."""
    run_cli(cluster, "task", "register", str(ROOT / "tasks" / "examples" / "text_sentiment"))
    made = wtm_json(cluster, "run", "submit", "text_sentiment", '{"text": "when"}')["run_id"]

    def listed(*when: str) -> list[str]:
        runs = wtm_json(
            cluster, "run", "list", "--task", "text_sentiment", "--limit", "1000", *when
        )
        return [r["run_id"] for r in runs]

    assert made in listed("--since", "1h")
    assert made in listed("--since", "2026-01-01T00:00:00Z", "--until", "2999-01-01")
    assert made not in listed("--until", "1h")  # created before an hour ago: not it
    assert made not in listed("--since", "2999-01-01T00:00:00+01:00")
    bad = run_cli(cluster, "run", "list", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "--since" in bad.stderr and "a time ago" in bad.stderr


def test_a_run_submitted_from_the_cli_carries_its_labels(cluster: Cluster, tmp_path: Path) -> None:
    """`--label KEY=VALUE` (repeated) on a submit and on a batch: the runs carry them and
    `wtm run list --label` finds them; a malformed one is a usage error, a refused key is
    named by the scheduler."""
    run_cli(cluster, "task", "register", str(ROOT / "tasks" / "examples" / "text_sentiment"))
    tag = f"t{tmp_path.name[-12:]}".replace("_", "-")
    one = wtm_json(
        cluster, "run", "submit", "text_sentiment", '{"text": "labelled"}',
        "--label", f"team={tag}", "--label", "env=ci",
    )  # fmt: skip
    assert one["labels"] == {"team": tag, "env": "ci"}
    inputs = tmp_path / "two.jsonl"
    inputs.write_text('{"text": "a"}\n{"text": "b"}\n')
    batch = wtm_json(
        cluster, "run", "submit", "text_sentiment", "--inputs", str(inputs),
        "--label", f"team={tag}",
    )  # fmt: skip
    found = wtm_json(cluster, "run", "list", "--label", f"team={tag}")
    expected = {one["run_id"], *(r["run_id"] for r in batch["runs"])}
    assert {r["run_id"] for r in found} == expected
    bad = run_cli(cluster, "run", "submit", "text_sentiment", "--label", "team", check=False)
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr
    refused = run_cli(
        cluster, "run", "submit", "text_sentiment", '{"text": "x"}', "--label", "bad key=1",
        check=False,
    )  # fmt: skip
    assert refused.returncode == 3 and "labels: key 'bad key'" in refused.stderr


def test_a_tasks_package_is_downloaded_as_registered(cluster: Cluster, tmp_path: Path) -> None:
    """`wtm task download`: the archive the executors run, its digest the registry's."""
    import hashlib
    import tarfile

    run_cli(cluster, "task", "register", str(ROOT / "tasks" / "examples" / "text_sentiment"))
    target = tmp_path / "pkg.tar.gz"
    got = wtm_json(cluster, "task", "download", "text_sentiment", "-o", str(target))
    info = wtm_json(cluster, "task", "info", "text_sentiment")
    data = target.read_bytes()
    assert got["digest"] == info["digest"] == hashlib.sha256(data).hexdigest()
    with tarfile.open(target) as tar:
        names = tar.getnames()
        manifest = tar.extractfile(next(n for n in names if n.endswith("task.json")))
        assert manifest is not None and json.load(manifest)["task_id"] == "text_sentiment"
    missing = run_cli(cluster, "task", "download", "no_such_task", check=False)
    assert missing.returncode == 3 and "NOT_FOUND" in missing.stderr


def test_a_script_waits_for_runs_and_reads_how_they_ended(cluster: Cluster) -> None:
    """`wtm run wait`: exit 0 once every run completed, 1 when one did not, 4 when the time
    ran out first (the run goes on)."""
    run_cli(cluster, "task", "register", str(ROOT / "tasks" / "examples" / "text_sentiment"))

    def submitted(*extra: str) -> str:
        given = ["run", "submit", "text_sentiment", '{"text": "wait"}', "--no-wait", *extra]
        return str(wtm_json(cluster, *given)["run_id"])

    first, second = submitted(), submitted()
    waited = wtm_json(cluster, "run", "wait", first, second, "--timeout", "60s")
    assert [(r["run_id"], r["state"]) for r in waited] == [
        (first, "COMPLETED"), (second, "COMPLETED"),
    ]  # fmt: skip
    later = submitted("--delay", "1h")
    out = run_cli(cluster, "run", "wait", later, "--timeout", "1s", check=False)
    assert out.returncode == 4 and "DEADLINE_EXCEEDED" in out.stderr
    cancelled = run_cli(cluster, "run", "cancel", later)
    assert cancelled.returncode == 0
    ended = run_cli(cluster, "--json", "run", "wait", later, check=False)
    assert ended.returncode == 1 and json.loads(ended.stdout)["state"] == "CANCELLED"


def test_bad_input_json_is_a_usage_error(cluster: Cluster) -> None:
    result = run_cli(cluster, "run", "submit", "text_sentiment", "[1,", check=False)
    assert result.returncode == 2
    assert "INPUT_JSON" in result.stderr
    nan = run_cli(cluster, "run", "submit", "text_sentiment", '{"text": NaN}', check=False)
    assert nan.returncode == 3 and "input_json: NaN is not JSON" in nan.stderr
    assert "uploaded" not in nan.stdout  # NaN != NaN once read as a file replaced
    huge = run_cli(cluster, "auth", "audit", "--limit", str(10**12), check=False)
    assert huge.returncode == 2 and "--limit" in huge.stderr  # was INTERNAL, exit 5


def test_the_original_systems_commands_keep_working(cluster: Cluster, tmp_path: Path) -> None:
    """The Celery-based system's command names (its documents' own commands): aliases that
    say what they stand for, and a hint where there is no counterpart."""
    run_cli(cluster, "task", "register", str(ROOT / "tasks" / "examples"))
    executed = run_cli(cluster, "--json", "execute", "text_sentiment", '{"text": "so good"}')
    assert json.loads(executed.stdout)["state"] == "COMPLETED"
    assert "is `wtm run submit` here" in executed.stderr
    listed = run_cli(cluster, "--json", "executions", "--status", "completed", "--limit", "5")
    assert {r["state"] for r in json.loads(listed.stdout)} == {"COMPLETED"}
    tasks = run_cli(cluster, "--json", "pipeline", "tasks").stdout
    assert "text_sentiment" in {t["task_id"] for t in json.loads(tasks)}
    assert set(json.loads(run_cli(cluster, "--json", "task", "list-templates").stdout)) == {
        "basic",
        "batching",
        "ml",
        "simple",
    }
    run_cli(cluster, "pipeline", "register")
    every = json.loads(run_cli(cluster, "pipeline", "show-config").stdout)["pipelines"]
    assert {"face_processing_pipeline", "simple_face_pipeline"} <= every.keys()
    info = run_cli(cluster, "task", "info", "text_sentiment").stdout
    assert "timeout" in info and "retries" in info and "input_schema" in info
    verbose = run_cli(
        cluster,
        "task",
        "register",
        str(ROOT / "tasks" / "examples" / "text_sentiment"),
        "--verbose",
    )
    assert "entry point" in verbose.stdout
    start = run_cli(cluster, "start", "--concurrency", "10", check=False)
    assert start.returncode == 2 and "services.executor" in start.stderr
    (tmp_path / "tasks" / "templates").mkdir(parents=True)  # a checkout's root
    run_cli(cluster, "task", "create", "my_new_task", "--template", "ml", cwd=tmp_path)
    assert (tmp_path / "tasks" / "my_new_task" / "task.json").is_file()


def test_errors_go_to_stderr_with_an_exit_code_per_class(cluster: Cluster, tmp_path: Path) -> None:
    """0 done, 1 a followed run failed, 2 usage, 3 refused, 4 out of reach; errors never on
    stdout, and a JSON object with --json."""
    run_cli(cluster, "task", "register", str(ROOT / "tests" / "fixtures" / "tasks" / "fussy"))
    cases = [
        (["run", "get", "no-such-run"], 3, "NOT_FOUND"),
        (["run", "submit"], 2, "Usage"),
        (["run", "submit", "fussy", '{"value": -1}'], 1, ""),
        (
            ["--retry-seconds", "0", "--scheduler", "127.0.0.1:1", "run", "get", "x"],
            4,
            "UNAVAILABLE",
        ),
        (["task", "test", str(tmp_path)], 2, "has no task.json"),
    ]
    for args, code, said in cases:
        result = run_cli(cluster, *args, check=False)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert said in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        if code in (3, 4):
            assert result.stdout == "", args
    refused = run_cli(cluster, "--json", "run", "get", "no-such-run", check=False)
    assert refused.returncode == 3 and refused.stdout == ""
    error = json.loads(refused.stderr)["error"]
    assert (error["code"], error["field"], error["exit_code"]) == ("NOT_FOUND", "run_id", 3)
    usage = run_cli(cluster, "--json", "run", "submit", check=False)
    assert usage.returncode == 2 and json.loads(usage.stderr)["error"]["code"] == "USAGE"


def test_version_help_and_json_lines_for_scripts(cluster: Cluster) -> None:
    from clients import __version__

    assert run_cli(cluster, "--version").stdout.strip() == f"wtm, version {__version__}"
    help_text = run_cli(cluster, "--help").stdout
    assert "WTM_SCHEDULER_ADDR" in help_text and "WTM_API_KEY" in help_text
    assert "Exit codes" in help_text and "_WTM_COMPLETE" in help_text
    run_cli(cluster, "task", "register", str(ROOT / "tests" / "fixtures" / "tasks" / "echo"))
    run = json.loads(run_cli(cluster, "--json", "run", "submit", "echo", "{}").stdout)
    lines = run_cli(cluster, "--json", "run", "watch", run["run_id"]).stdout.splitlines()
    assert len(lines) >= 2 and all(json.loads(line)["run_id"] == run["run_id"] for line in lines)


def test_an_uploaded_input_file_is_named_with_its_whole_uri_on_one_line(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The URI to copy was folded at the console's width, mid-digest."""
    run_cli(cluster, "task", "register", str(ROOT / "tasks" / "examples" / "speech_activity"))
    deep = tmp_path / ("d" * 100) / ("e" * 100)  # a path longer than the console's 200 columns
    deep.mkdir(parents=True)
    audio = shutil.copy(ROOT / "tasks" / "data" / "speech.wav", deep / "speech.wav")
    out = run_cli(
        cluster, "run", "submit", "speech_activity", json.dumps({"audio_path": str(audio)}),
        "--no-wait",
    ).stdout  # fmt: skip
    [said] = [line for line in out.splitlines() if line.startswith("uploaded")]
    assert said.startswith(f"uploaded audio_path {audio} as artifact://sha256/")
    assert said.endswith("/speech.wav") and len(said.split("/sha256/")[1]) == 64 + len(
        "/speech.wav"
    )


def test_auth_list_gives_each_key_whole_and_says_where_it_looked(cluster: Cluster) -> None:
    listed = json.loads(run_cli(cluster, "--json", "-n", "*", "auth", "list").stdout)
    shown = run_cli(cluster, "-n", "*", "auth", "list").stdout
    assert listed and all(k["key_id"] in shown for k in listed)
    empty = run_cli(cluster, "-n", "nobody-here", "auth", "list").stdout
    assert "No API key in this namespace (-n '*': in all)." in empty
