"""What the scheduler's queues are called, and which executor may take from which.

A step waits on its task's queue ("vision"), in its run's namespace ("team-a/vision"; the
"default" namespace's queues keep their plain names), with the task's executor labels as a
suffix when it has any ("team-a/vision|gpu=true"). An executor serves some queues, in some
namespaces (``*``: every namespace), and takes a labelled variant only if its own labels
match every label the variant asks for.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Sequence

from common.errors import InvalidArgument, NotFound, PermissionDenied
from services.common import auth
from services.common.auth import ALL_NAMESPACES, DEFAULT_NAMESPACE, check_namespace

_BASE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")  # a task.json queue (the registry's rule)
_LABEL = re.compile(r"^[A-Za-z0-9_.\-/]{1,63}=[^,|\s]{0,256}$")


def queue_variant(queue: str, labels: dict[str, str]) -> str:
    if not labels:
        return queue
    return queue + "|" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def in_namespace(namespace: str, variant: str) -> str:
    """The queue ``variant`` of ``namespace``."""
    return variant if namespace == DEFAULT_NAMESPACE else f"{namespace}/{variant}"


def split(queue: str) -> tuple[str, str]:
    """(namespace, variant) of a queue's full name."""
    name, bar, labels = queue.partition("|")  # label values may hold "/"
    namespace, _, base = name.rpartition("/")
    return namespace or DEFAULT_NAMESPACE, base + bar + labels


def held_by(queue: str, paused: Container[str]) -> str | None:
    """The pause holding ``queue`` (pauses.py), if one does: its own, or its name's without
    the labels — pausing "vision" holds "vision|gpu=true" too, pausing that holds only it."""
    if queue in paused:
        return queue
    base, bar, _ = queue.partition("|")
    return base if bar and base in paused else None


def is_plain(queue: str) -> bool:
    """A default-namespace queue without labels: executors find those by name alone; every
    other queue is announced in the set of queue variants."""
    return "|" not in queue and "/" not in queue


def serves(
    queue: str,
    queues: Sequence[str],
    labels: dict[str, str],
    namespaces: Sequence[str] = (ALL_NAMESPACES,),
) -> bool:
    """Whether an executor on ``queues`` in ``namespaces`` with ``labels`` may take work
    from ``queue``."""
    namespace, variant = split(queue)
    if ALL_NAMESPACES not in namespaces and namespace not in namespaces:
        return False
    base, _, wanted = variant.partition("|")
    if base not in queues:
        return False
    pairs = [p.split("=", 1) for p in wanted.split(",") if p]
    return all(labels.get(k) == v for k, v in pairs)


def own_queues(queues: Sequence[str], namespaces: Sequence[str]) -> list[str]:
    """The unlabelled queues an executor takes from without looking them up."""
    if ALL_NAMESPACES in namespaces:
        return list(queues)  # the default namespace's; the others' are announced variants
    return [in_namespace(ns, q) for ns in namespaces for q in queues]


def served_namespaces(bound_to: str, requested: Iterable[str]) -> tuple[str, ...]:
    """The namespaces an executor serves: those it asked for, within what its credential
    is bound to (``*``: any); all it may serve when it asked for none."""
    asked = tuple(dict.fromkeys(requested))
    for name in asked:
        check_namespace(name, "hello.namespaces", allow_all=True)
    if bound_to == ALL_NAMESPACES:
        return asked or (ALL_NAMESPACES,)
    if any(name != bound_to for name in asked):
        raise PermissionDenied(
            f"this executor's key is bound to namespace {bound_to!r}", field="hello.namespaces"
        )
    return (bound_to,)


def full_name(queue: str, scope: str) -> str:
    """The full name of ``queue`` as a caller acting in ``scope`` names it: by its name in
    that namespace, or by its full name. Another namespace's queue is NOT_FOUND."""
    if not queue:
        raise InvalidArgument("is required", field="queue")
    name, bar, labels = queue.partition("|")
    namespace, _, base = name.rpartition("/")
    if not _BASE.match(base) or (bar and not all(map(_LABEL.match, labels.split(",")))):
        raise InvalidArgument(
            f"{queue[:120]!r} is not a queue name (like vision, team-a/vision, vision|gpu=true)",
            field="queue",
        )
    if namespace:
        auth.check_namespace(namespace, field="queue")
        if not auth.visible(namespace, scope):
            raise NotFound(f"no queue {queue[:120]} in namespace {scope}", field="queue")
        return in_namespace(namespace, base + bar + labels)
    return in_namespace(auth.one_namespace(scope), base + bar + labels)
