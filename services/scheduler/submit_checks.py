"""What a submit may carry, checked before anything is looked up (sizes and shapes of its
small fields), and what its request id is claimed under."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.errors import InvalidArgument
from services.common import auth
from services.scheduler import run_labels

if TYPE_CHECKING:
    from services.scheduler.planning import SubmitRequest


def check_priority(priority: int) -> None:
    if priority and not 1 <= priority <= 10:
        raise InvalidArgument(
            f"must be from 1 (lowest) to 10 (highest), or 0 for the task's own; got {priority}",
            field="priority",
        )


# Limits on what a submit may carry (stated in scheduler_service.proto and the README).
MAX_REQUEST_ID_CHARS = 256
MAX_RUN_TIMEOUT_SECONDS = 30 * 86400
MAX_NAME_CHARS = 200  # "task_id@version" or "pipeline_id@version"


def check_request(req: SubmitRequest) -> None:
    """Sizes and shapes of a submit's small fields, before anything is looked up."""
    if bool(req.task) == bool(req.pipeline):
        raise InvalidArgument("set exactly one of task and pipeline", field="task")
    check_priority(req.priority)
    for name, value in (("task", req.task), ("pipeline", req.pipeline)):
        if len(value) > MAX_NAME_CHARS:
            raise InvalidArgument(f"is over {MAX_NAME_CHARS} characters", field=name)
    if len(req.request_id) > MAX_REQUEST_ID_CHARS or not req.request_id.isprintable():
        raise InvalidArgument(
            f"must be at most {MAX_REQUEST_ID_CHARS} printable characters", field="request_id"
        )
    run_labels.check_labels(req.labels or {})
    for field_name, lowest, seconds in (
        ("run_timeout", 1, req.run_timeout_seconds),
        ("start_delay", 0, req.start_delay_seconds),
    ):
        if seconds and not lowest <= seconds <= MAX_RUN_TIMEOUT_SECONDS:
            span = "1 second" if lowest else "0"
            got = f"{seconds / 86400:g} days" if abs(seconds) >= 86400 else f"{seconds:g}s"
            raise InvalidArgument(
                f"must be from {span} to 30 days, or unset for none; got {got}",
                field=field_name,
            )


def request_key(namespace: str, request_id: str) -> str:
    """What a request id is claimed under: the same id in two namespaces is two requests
    (the "default" namespace's keep their plain ids, as before namespaces)."""
    if not request_id or namespace == auth.DEFAULT_NAMESPACE:
        return request_id
    return f"{namespace}/{request_id}"
