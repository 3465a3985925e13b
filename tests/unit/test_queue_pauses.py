"""How PauseQueue names a queue (``queue_names.full_name``): by its name in the caller's
namespace or by its full name; another namespace's is NOT_FOUND, a malformed one refused.
And which pause holds a queue (``held_by``): its own, or its unlabelled name's."""

from __future__ import annotations

import pytest

from common.errors import InvalidArgument, NotFound
from services.scheduler.queue_names import full_name, held_by


@pytest.mark.parametrize(
    ("queue", "scope", "full"),
    [
        ("vision", "default", "vision"),
        ("vision", "team-a", "team-a/vision"),
        ("team-a/vision", "team-a", "team-a/vision"),
        ("vision|gpu=true", "team-a", "team-a/vision|gpu=true"),
        ("team-a/vision|gpu=true,zone=eu", "*", "team-a/vision|gpu=true,zone=eu"),
        ("default/vision", "default", "vision"),  # the default namespace's plain name
    ],
)
def test_a_queue_is_named_in_the_namespace_or_in_full(queue: str, scope: str, full: str) -> None:
    assert full_name(queue, scope) == full


@pytest.mark.parametrize(
    "queue", ["", "Vision", "vision queue", "a" * 65, "vision|gpu", "vision|=x", "bad ns!/q"]
)
def test_a_malformed_name_is_refused_naming_queue(queue: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        full_name(queue, "team-a")
    assert err.value.field == "queue"


def test_another_namespaces_queue_is_not_found_and_a_short_name_needs_one() -> None:
    with pytest.raises(NotFound) as err:
        full_name("team-b/vision", "team-a")
    assert err.value.field == "queue" and "team-b/vision" in str(err.value)
    with pytest.raises(InvalidArgument):  # a key of every namespace, acting in none
        full_name("vision", "*")


@pytest.mark.parametrize(
    ("queue", "paused", "holder"),
    [
        ("vision", {"vision"}, "vision"),
        ("vision|gpu=true", {"vision"}, "vision"),  # a variant of a paused queue is held too
        ("team-a/vision|gpu=true,zone=eu", {"team-a/vision"}, "team-a/vision"),
        ("vision|gpu=true", {"vision|gpu=true"}, "vision|gpu=true"),
        ("vision", {"vision|gpu=true"}, None),  # a variant's pause holds only the variant
        ("vision|gpu=false", {"vision|gpu=true"}, None),
        ("team-a/vision", {"vision"}, None),  # another namespace's queue of that name
        ("visions", {"vision"}, None),
    ],
)
def test_a_pause_holds_its_queue_and_the_queues_labelled_variants(
    queue: str, paused: set[str], holder: str | None
) -> None:
    assert held_by(queue, paused) == holder
