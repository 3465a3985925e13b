"""Which executor may take from which queue: a queue's full name (namespace, task queue,
labels), and an executor's namespaces, queues and labels. This is a trust boundary: an
executor bound to one team's namespace never takes another team's steps."""

from __future__ import annotations

import pytest

from common.errors import InvalidArgument, PermissionDenied
from services.scheduler.queue_names import (
    in_namespace,
    is_plain,
    own_queues,
    queue_variant,
    served_namespaces,
    serves,
    split,
)

GPU = "vision|gpu=true,zone=eu/west"  # a label value may hold "/"


def test_a_queues_full_name_is_its_namespace_task_queue_and_labels() -> None:
    assert queue_variant("vision", {}) == "vision"
    assert queue_variant("vision", {"zone": "eu/west", "gpu": "true"}) == GPU
    assert in_namespace("default", GPU) == GPU
    assert in_namespace("team-a", GPU) == f"team-a/{GPU}"
    assert split(f"team-a/{GPU}") == ("team-a", GPU)
    assert split(GPU) == ("default", GPU)
    assert split("vision") == ("default", "vision")
    assert [is_plain(q) for q in ("vision", GPU, "team-a/vision")] == [True, False, False]


@pytest.mark.parametrize(
    ("queue", "namespaces", "labels", "taken"),
    [
        ("team-a/vision", ("team-a",), {}, True),
        ("team-b/vision", ("team-a",), {}, False),  # another team's
        ("vision", ("team-a",), {}, False),  # the default namespace's
        ("vision", ("default",), {}, True),
        ("team-b/vision", ("*",), {}, True),
        ("team-a/audio", ("team-a",), {}, False),  # not a queue it serves
        (f"team-a/{GPU}", ("team-a",), {"gpu": "true", "zone": "eu/west"}, True),
        (f"team-a/{GPU}", ("team-a",), {"gpu": "true", "zone": "eu/west", "ram": "64"}, True),
        (f"team-a/{GPU}", ("team-a",), {"gpu": "true"}, False),  # a label missing
        (f"team-a/{GPU}", ("team-a",), {"gpu": "false", "zone": "eu/west"}, False),
        ("team-a/vision", ("team-a",), {"gpu": "true"}, True),  # labels it does not ask for
    ],
)
def test_an_executor_takes_only_its_namespaces_queues_and_labels(
    queue: str, namespaces: tuple[str, ...], labels: dict[str, str], taken: bool
) -> None:
    assert serves(queue, ["vision"], labels, namespaces) is taken


def test_the_queues_an_executor_takes_from_by_name() -> None:
    assert own_queues(["vision", "audio"], ("*",)) == ["vision", "audio"]
    assert own_queues(["vision"], ("team-a", "default")) == ["team-a/vision", "vision"]


def test_an_executor_serves_what_it_asks_within_what_its_key_is_bound_to() -> None:
    assert served_namespaces("*", []) == ("*",)
    assert served_namespaces("*", ["team-a", "team-b", "team-a"]) == ("team-a", "team-b")
    assert served_namespaces("team-a", []) == ("team-a",)
    assert served_namespaces("team-a", ["team-a"]) == ("team-a",)
    for asked in (["team-b"], ["team-a", "team-b"], ["*"]):
        with pytest.raises(PermissionDenied) as err:
            served_namespaces("team-a", asked)
        assert err.value.field == "hello.namespaces"
    with pytest.raises(InvalidArgument) as bad:
        served_namespaces("*", ["Team A"])
    assert bad.value.field == "hello.namespaces"
