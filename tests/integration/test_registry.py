"""The registry against the real local stack: packages, versions, pipelines, refusals."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import grpc
import pytest

from clients.sdk import ApiError, Client
from common.packaging import pack_directory, sha256_hex
from services.localstack import Cluster
from tests.conftest import EXAMPLES, ROOT, keyed_channel
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import registry_service_pb2_grpc as rpb_grpc

FIXTURES = ROOT / "tests" / "fixtures"


def make_task(tmp: Path, task_id: str, version: str = "1.0.0", **manifest: Any) -> Path:
    d = tmp / f"{task_id}-{version}"
    d.mkdir(parents=True)
    doc = {"task_id": task_id, "version": version, "category": "testing", **manifest}
    (d / "task.json").write_text(json.dumps(doc))
    (d / "task.py").write_text(
        "from tasks.base.task_base import SimpleTask\n\n"
        f"class Task(SimpleTask):\n    def process(self, d):\n        return {{'v': {version!r}}}\n"
    )
    return d


def refused(client: Client, data: bytes) -> ApiError:
    with pytest.raises(ApiError) as err:
        client.upload_package(data)
    return err.value


def tar_gz(files: dict[str, bytes], link: str = "") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return gzip.compress(raw.getvalue())


GOOD_MANIFEST = json.dumps({"task_id": "evil", "version": "1.0.0"}).encode()


@pytest.fixture(scope="module")
def registered(client: Client) -> None:
    for d in sorted((FIXTURES / "tasks").iterdir()):
        client.register_task(d)
    client.register_task(EXAMPLES / "text_sentiment")


# Packages ------------------------------------------------------------------------------------


def test_a_declared_digest_that_does_not_match_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    data = pack_directory(make_task(tmp_path, "digest_check"))
    with keyed_channel(cluster.registry_address, cluster.admin_key) as channel:
        stub = rpb_grpc.RegistryServiceStub(channel)
        header = rpb.UploadTaskPackageHeader(sha256="0" * 64, size_bytes=len(data))
        messages = [
            rpb.UploadTaskPackageRequest(header=header),
            rpb.UploadTaskPackageRequest(chunk=data),
        ]
        with pytest.raises(grpc.RpcError) as err:
            stub.UploadTaskPackage(iter(messages), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("header.sha256:")


def test_a_package_downloads_by_digest_byte_for_byte(client: Client, tmp_path: Path) -> None:
    data = pack_directory(make_task(tmp_path, "download_me"))
    info = client.upload_package(data)
    assert client.download_package(info.digest) == data


def test_an_unknown_digest_is_not_found(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.download_package("ab" * 32)
    assert err.value.code == "NOT_FOUND"


@pytest.mark.parametrize(
    ("files", "link", "named"),
    [
        ({"task.json": GOOD_MANIFEST, "task.py": b"", "../escape.py": b""}, "", "../escape.py"),
        ({"task.json": GOOD_MANIFEST, "task.py": b""}, "task_link.py", "task_link.py"),
        ({"task.py": b""}, "", "task.json"),
        (
            {"task.json": b'{"task_id": "evil", "version": "one"}', "task.py": b""},
            "",
            "task.json: version",
        ),
        ({"task.json": GOOD_MANIFEST, "other.py": b""}, "", "task.json: entry_point"),
        # The module is there but cannot start: refused now, not when a run starts.
        ({"task.json": GOOD_MANIFEST, "task.py": b"def oops(:\n"}, "", "line 1"),
        ({"task.json": GOOD_MANIFEST, "task.py": b"class Other: pass\n"}, "", "no 'Task'"),
        (  # a misspelt key is refused, naming it, not silently ignored
            {
                "task.json": b'{"task_id": "evil", "version": "1.0.0", "max_retires": 3}',
                "task.py": b"class Task: pass\n",
            },
            "",
            "task.json: max_retires",
        ),
        (  # a schema that is not JSON Schema is refused at registration, not at a run
            {
                "task.json": b'{"task_id": "evil", "version": "1.0.0", "input_schema": '
                b'{"type": "object", "properties": {"a": {"type": "nope"}}}}',
                "task.py": b"class Task: pass\n",
            },
            "",
            "task.json: input_schema",
        ),
        (
            {
                "task.json": b'{"task_id": "evil", "version": "1.0.0", "entry_point": "task.py",'
                b' "class_name": "Task"}',
                "task.py": b"class Task: pass\n",
            },
            "",
            "write 'module.Class'",
        ),
    ],
)
def test_unsafe_or_invalid_packages_are_refused_and_nothing_is_stored(
    client: Client, files: dict[str, bytes], link: str, named: str
) -> None:
    error = refused(client, tar_gz(files, link))
    assert error.code == "INVALID_ARGUMENT"
    assert named in error.message
    with pytest.raises(ApiError) as lookup:
        client.get_task("evil")
    assert lookup.value.code == "NOT_FOUND"


def test_every_problem_of_a_package_is_named_at_once(client: Client) -> None:
    """task.json's values, its keys and the entry point against the package: one refusal
    naming all three, the first by path as the error's field."""
    manifest = b'{"task_id": "evil", "version": "1.0.0", "priority": 11, "max_retires": 3}'
    error = refused(client, tar_gz({"task.json": manifest, "task.py": b"class Other: pass\n"}))
    assert error.code == "INVALID_ARGUMENT"
    lines = error.message.splitlines()
    assert lines[0].startswith("task.json: entry_point: task.py defines no 'Task'"), lines
    assert lines[1] == "2 more problems:"
    assert (
        lines[2]
        == "- task.json: max_retires: unknown key 'max_retires'; did you mean 'max_retries'?"
    )
    assert lines[3] == "- task.json: priority: must be an integer from 1 to 10, got 11"


def test_a_bomb_is_refused(client: Client) -> None:
    bomb = tar_gz({"task.json": GOOD_MANIFEST, "task.py": b"", "zeros": b"\0" * (40 * 1024 * 1024)})
    error = refused(client, bomb)
    assert (error.code, "package:" in error.message) == ("INVALID_ARGUMENT", True)


def test_a_package_over_the_size_limit_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from services.localstack.cluster import serving
    from services.localstack.processes import free_port, wait_until

    address = f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "registry.log"
    with (
        log_path.open("wb") as log,
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.registry",
                "--listen",
                address,
                "--max-package-bytes",
                "600",
            ],
            env={**os.environ, **cluster.env(), "PYTHONFAULTHANDLER": "1"},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        ) as proc,
    ):
        try:
            wait_until("small registry", lambda: serving(address), timeout=30)
            big = make_task(tmp_path, "too_big")
            (big / "data.bin").write_bytes(os.urandom(2000))
            with (
                Client(address, cluster.scheduler_address, api_key=cluster.admin_key) as small,
                pytest.raises(ApiError) as err,
            ):
                small.register_task(big)
            assert err.value.code == "INVALID_ARGUMENT"
            assert "600-byte limit" in err.value.message
        finally:
            proc.send_signal(signal.SIGTERM)
            try:  # it stops by itself, in its grace period; else it is killed, and says where
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack
                proc.wait(10)
                pytest.fail(
                    f"the registry did not stop on SIGTERM:\n{log_path.read_text()[-3000:]}"
                )


# Versions -------------------------------------------------------------------------------------


def test_latest_is_the_highest_semver_not_the_newest(client: Client, tmp_path: Path) -> None:
    for version in ("1.9.0", "1.10.0", "1.2.0", "2.0.0-rc.1"):
        client.register_task(make_task(tmp_path, "versioned", version))
    assert client.get_task("versioned").version == "1.10.0"  # releases before pre-releases
    assert client.get_task("versioned@1.2.0").version == "1.2.0"
    client.register_task(make_task(tmp_path, "only_pre", "1.0.0-rc.1"))
    assert client.get_task("only_pre").version == "1.0.0-rc.1"  # unless there is no release


def test_a_version_that_does_not_exist_is_named_with_the_latest_that_does(
    client: Client, tmp_path: Path
) -> None:
    client.register_task(make_task(tmp_path, "known", "1.4.0"))
    with pytest.raises(ApiError) as missing:
        client.get_task("known@bad")
    assert missing.value.code == "NOT_FOUND" and missing.value.field == "version"
    assert missing.value.reason == "task known has no version 'bad'; its latest is 1.4.0"
    with pytest.raises(ApiError) as unknown:
        client.get_task("unknown@1.0.0")
    assert unknown.value.code == "NOT_FOUND" and unknown.value.field == "task_id"


def test_a_deprecated_version_is_no_longer_latest_but_still_fetchable(
    client: Client, tmp_path: Path
) -> None:
    for version in ("1.0.0", "1.1.0"):
        client.register_task(make_task(tmp_path, "retiring", version))
    t = client.deprecate_task("retiring@1.1.0", "broken on empty input")
    assert (t.deprecated, t.deprecation_reason) == (True, "broken on empty input")
    assert client.get_task("retiring").version == "1.0.0"
    assert client.get_task("retiring@1.1.0").deprecated


def test_listing_pages_through_every_version_newest_first(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    versions = ["0.1.0", "0.2.0", "0.10.0", "1.0.0", "1.0.1"]
    for v in versions:
        client.register_task(make_task(tmp_path, "paged", v, tags=["paging"]))
    seen, token, pages = [], "", 0
    with keyed_channel(cluster.registry_address, cluster.admin_key) as channel:
        stub = rpb_grpc.RegistryServiceStub(channel)
        while True:
            reply = stub.ListTasks(
                rpb.ListTasksRequest(page_size=2, page_token=token, tag="paging")
            )
            seen += [t.version for t in reply.tasks]
            pages += 1
            token = reply.next_page_token
            if not token:
                break
    assert seen == ["1.0.1", "1.0.0", "0.10.0", "0.2.0", "0.1.0"]
    assert pages == 3


def test_a_page_token_that_was_not_issued_is_refused(cluster: Cluster) -> None:
    with (
        keyed_channel(cluster.registry_address, cluster.admin_key) as channel,
        pytest.raises(grpc.RpcError) as err,
    ):
        rpb_grpc.RegistryServiceStub(channel).ListTasks(rpb.ListTasksRequest(page_token="!!"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("page_token:")


def test_filters_by_category_and_queue(client: Client, registered: None) -> None:
    nlp = list(client.list_tasks(category="nlp"))
    assert {t.task_id for t in nlp} == {"text_sentiment"}
    assert list(client.list_tasks(queue="no-such-queue")) == []


# Pipelines ------------------------------------------------------------------------------------


def test_a_pipeline_version_that_does_not_exist_is_named_with_the_latest_that_does(
    client: Client, registered: None
) -> None:
    [text] = [
        p
        for p in client.register_pipelines(FIXTURES / "pipelines" / "seed_style.json")
        if p.pipeline_id == "text_pipeline"
    ]
    with pytest.raises(ApiError) as missing:
        client.get_pipeline("text_pipeline@9.9.9")
    assert missing.value.code == "NOT_FOUND" and missing.value.field == "version"
    assert missing.value.reason == (
        f"pipeline text_pipeline has no version '9.9.9'; its latest is {text.version}"
    )


def test_the_seed_style_config_registers_as_written(client: Client, registered: None) -> None:
    result = client.register_pipelines(FIXTURES / "pipelines" / "seed_style.json")
    by_id = {p.pipeline_id: p for p in result}
    text = by_id["text_pipeline"]
    assert [s.step_id for s in text.steps] == [
        "word_count",
        "text_sentiment",
        "echo_words",
        "merge",
    ]
    assert text.steps[1].depends_on == ["word_count"]
    sentiment = client.get_task("text_sentiment")
    assert (text.steps[1].task_version, text.steps[1].digest) == (
        sentiment.version,
        sentiment.digest,
    )
    custom = by_id["custom_pipeline"]
    assert [s.step_id for s in custom.steps] == [
        "word_count",
        "echo",
    ]  # step_id defaults to task_id
    assert custom.steps[1].timeout_seconds == 60  # from global_settings


def test_a_config_in_the_seeds_shape_registers_as_written(client: Client, registered: None) -> None:
    result = {
        p.pipeline_id: p
        for p in client.register_pipelines(FIXTURES / "pipelines" / "seed_shape.json")
    }
    shaped = result["face_pipeline_seed_shape"]
    assert [s.depends_on for s in shaped.steps] == [[], ["word_count"], ["word_count"]]
    assert all(s.digest for s in shaped.steps)
    parked = result["parked_pipeline"]
    assert parked.enabled is False
    assert [(s.task_version, s.digest) for s in parked.steps] == [("", ""), ("", "")]  # unpinned
    with pytest.raises(ApiError) as err:
        client.submit(pipeline="parked_pipeline", input={})
    assert err.value.code == "FAILED_PRECONDITION"


def test_registering_the_same_pipeline_again_is_idempotent(
    client: Client, registered: None
) -> None:
    client.register_pipelines(FIXTURES / "pipelines" / "seed_style.json")
    again = client.register_pipelines(FIXTURES / "pipelines" / "seed_style.json", "text_pipeline")
    assert [p.created for p in again] == [False]


def test_the_same_pipeline_version_with_other_steps_is_refused(
    client: Client, registered: None
) -> None:
    client.register_pipelines(FIXTURES / "pipelines" / "seed_style.json")
    doc = json.loads((FIXTURES / "pipelines" / "seed_style.json").read_text())
    doc["pipelines"]["custom_pipeline"]["steps"][1]["timeout"] = 5
    with pytest.raises(ApiError) as err:
        client.register_pipelines(doc, "custom_pipeline")
    assert err.value.code == "ALREADY_EXISTS"
    assert "pipelines.custom_pipeline.version" in err.value.message


def test_validate_only_stores_nothing(client: Client, registered: None) -> None:
    doc = {"pipeline_id": "dry_run_only", "steps": [{"task_id": "echo"}]}
    [p] = client.register_pipelines(doc, validate_only=True)
    assert p.steps[0].digest
    with pytest.raises(ApiError) as err:
        client.get_pipeline("dry_run_only")
    assert err.value.code == "NOT_FOUND"


def test_a_pipeline_with_an_unknown_task_is_refused_and_nothing_stored(
    client: Client, registered: None
) -> None:
    doc = {
        "pipelines": {
            "fine": {"steps": [{"task_id": "echo"}]},
            "broken": {"steps": [{"task_id": "no_such_task"}]},
        }
    }
    with pytest.raises(ApiError) as err:
        client.register_pipelines(doc)
    assert err.value.code == "INVALID_ARGUMENT"
    assert "pipelines.broken.steps" in err.value.message and "no_such_task" in err.value.message
    with pytest.raises(ApiError):
        client.get_pipeline("fine")


def test_a_pipeline_refuses_a_deprecated_version(client: Client, tmp_path: Path) -> None:
    client.register_task(make_task(tmp_path, "old_tool", "1.0.0"))
    client.deprecate_task("old_tool@1.0.0", "superseded")
    with pytest.raises(ApiError) as err:
        client.register_pipelines(
            {"pipeline_id": "uses_old", "steps": [{"task_id": "old_tool@1.0.0"}]}
        )
    assert "deprecated" in err.value.message


def test_a_cycle_is_refused_over_grpc_with_the_cycle_printed(
    client: Client, registered: None
) -> None:
    doc = {
        "pipeline_id": "loop",
        "steps": [
            {"step_id": "a", "task_id": "echo", "depends_on": ["b"]},
            {"step_id": "b", "task_id": "echo", "depends_on": ["a"]},
        ],
    }
    with pytest.raises(ApiError) as err:
        client.register_pipelines(doc)
    assert err.value.code == "INVALID_ARGUMENT"
    assert "dependency cycle: a -> b -> a" in err.value.message


def test_pipeline_versions_page_and_resolve_latest(client: Client, registered: None) -> None:
    for v in ("1.0.0", "1.1.0", "0.9.0"):
        client.register_pipelines(
            {"pipeline_id": "multi", "version": v, "steps": [{"task_id": "echo"}]}
        )
    assert client.get_pipeline("multi").version == "1.1.0"
    assert [p.version for p in client.list_pipelines(page_size=1, pipeline_id="multi")] == [
        "1.1.0",
        "1.0.0",
        "0.9.0",
    ]


def test_a_new_latest_with_another_graph_is_reported(client: Client, registered: None) -> None:
    two = [{"task_id": "echo"}, {"step_id": "again", "task_id": "echo", "depends_on": ["echo"]}]
    first = client.register_pipelines(
        {"pipeline_id": "evolving", "steps": two, "metadata": {"version": "2.0.0"}}
    )[0]
    assert first.version == "2.0.0" and first.warnings == []  # metadata.version is the version
    one = {"pipeline_id": "evolving", "version": "2.1.0", "steps": [{"task_id": "echo"}]}
    dry = client.register_pipelines(one, validate_only=True)[0]
    assert dry.warnings == [
        "pipelines.evolving: latest would become 2.1.0 (was 2.0.0, used by runs that name no "
        "version): step again removed"
    ]
    [now] = client.register_pipelines(one)[0].warnings
    assert now.startswith("pipelines.evolving: latest is now 2.1.0 (was 2.0.0")
    older = {"pipeline_id": "evolving", "version": "1.0.0", "steps": two}
    assert client.register_pipelines(older)[0].warnings == [
        "pipelines.evolving: 1.0.0 is older than 2.1.0, which stays latest"
    ]
    same = {"pipeline_id": "evolving", "version": "2.2.0", "steps": [{"task_id": "echo"}]}
    assert client.register_pipelines(same)[0].warnings == []  # the same graph: nothing to say
    with pytest.raises(ApiError) as err:
        client.register_pipelines({**same, "version": "3.0.0", "metadata": {"version": "3.1.0"}})
    assert err.value.message.startswith("pipeline.metadata.version: '3.1.0' differs")


def test_the_sentiment_example_package_is_reproducible(tmp_path: Path) -> None:
    copy = shutil.copytree(EXAMPLES / "text_sentiment", tmp_path / "copy")
    assert sha256_hex(pack_directory(copy)) == sha256_hex(
        pack_directory(EXAMPLES / "text_sentiment")
    )


def test_every_config_key_is_acted_on_refused_or_reported(client: Client, registered: None) -> None:
    """A key the registry does not know is refused, naming its path (a typo never passes
    silently); one it keeps without acting on comes back as a warning."""
    shaped = client.register_pipelines(FIXTURES / "pipelines" / "seed_shape.json")[0]
    notes = "\n".join(shaped.warnings)
    for key in ("input_processors", "output_format"):
        assert key in notes, key
    assert "global_settings" not in notes  # every one of them is acted on
    assert (shaped.max_parallel_tasks, shaped.enable_caching, shaped.log_level) == (
        10,
        True,
        "INFO",
    )
    steps = [{"task_id": "word_count", "retry_cont": 2}]
    for config, path in (
        ({"pipeline_id": "typo", "steps": steps}, "steps[0].retry_cont"),
        (
            {"pipelines": {"typo": {"steps": [{"task_id": "word_count"}]}}, "colour": 1},
            "colour",
        ),
        (
            {
                "pipelines": {"typo": {"steps": [{"task_id": "word_count"}]}},
                "global_settings": {"default_timeout": 5, "max_retry": 1},
            },
            "global_settings.max_retry",
        ),
        (
            {
                "pipeline_id": "bad",
                "steps": [{"task_id": "word_count"}],
                "global_settings": {"max_parallel_tasks": 0},
            },
            "global_settings.max_parallel_tasks",
        ),
        (
            {
                "pipeline_id": "bad",
                "steps": [{"task_id": "word_count"}],
                "global_settings": {"log_level": "LOUD"},
            },
            "global_settings.log_level",
        ),
        (
            {
                "pipeline_id": "bad",
                "steps": [{"task_id": "word_count"}],
                "global_settings": {"run_timeout": 0},
            },
            "global_settings.run_timeout",
        ),
        (
            {
                "pipeline_id": "bad",
                "steps": [{"task_id": "word_count"}],
                "global_settings": {"run_timeout": 31 * 86400},
            },
            "global_settings.run_timeout",
        ),
        (
            {
                "pipeline_id": "bad",
                "steps": [{"task_id": "word_count"}],
                "global_settings": {"enable_caching": "yes"},
            },
            "global_settings.enable_caching",
        ),
        (
            {"pipeline_id": "bad", "steps": [{"task_id": "word_count", "cache": "no"}]},
            "pipeline.steps[0].cache",
        ),
    ):
        with pytest.raises(ApiError) as err:
            client.register_pipelines(config)
        assert err.value.code == "INVALID_ARGUMENT" and err.value.message.startswith(path), (
            err.value.message
        )
