"""Errors with a gRPC status code, on both sides of the wire.

Domain code raises these and one server interceptor maps them to gRPC status codes; the
client core (``common.client_core``) maps a status it receives back to the same class, so
a caller catches ``NotFound`` whether the SDK, the CLI or another service made the call.
Every error names the field (or file) it is about, so a user can fix the request.
"""

from __future__ import annotations

import re

# "input_json.image_path: ...", "pipelines.face.steps[2].depends_on: ..." -> the field
_FIELD = re.compile(r"^([A-Za-z_$][\w.\[\]*$/@-]{0,200}): ")


class WtmError(Exception):
    """Base of all domain errors: a message that names ``field`` when there is one."""

    code = "INTERNAL"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.message = f"{field}: {message}" if field else message
        super().__init__(self.message)

    @property
    def reason(self) -> str:
        """The message without the field it names ("no run x", not "run_id: no run x")."""
        return self.message.removeprefix(f"{self.field}: ") if self.field else self.message

    @staticmethod
    def from_status(code: str, details: str) -> WtmError:
        """The error a call answered with gRPC status ``code`` (its name) and ``details``:
        the subclass for that code (the base for one without), ``field`` read from the
        details ("field: what is wrong"), ``message`` the details as sent."""
        cls = BY_CODE.get(code, WtmError)
        error = cls.__new__(cls)
        Exception.__init__(error, details)
        error.message = details
        match = _FIELD.match(details)
        error.field = match.group(1) if match else None
        if cls is WtmError:
            error.code = code
        return error


class InvalidArgument(WtmError):
    """The request is malformed; retrying it unchanged will fail again."""

    code = "INVALID_ARGUMENT"


class NotFound(WtmError):
    """A named resource does not exist."""

    code = "NOT_FOUND"


class AlreadyExists(WtmError):
    """A resource with that name exists and differs from what was sent."""

    code = "ALREADY_EXISTS"


class FailedPrecondition(WtmError):
    """The system is not in a state where the request can be carried out."""

    code = "FAILED_PRECONDITION"


class Unauthenticated(WtmError):
    """The caller did not present valid credentials."""

    code = "UNAUTHENTICATED"


class Unavailable(WtmError):
    """A backing service cannot be reached; the call may be retried."""

    code = "UNAVAILABLE"


class Unimplemented(WtmError):
    """The operation is not available in this version."""

    code = "UNIMPLEMENTED"


class PermissionDenied(WtmError):
    """The caller is known but its role does not allow this."""

    code = "PERMISSION_DENIED"


class DeadlineExceeded(WtmError, TimeoutError):
    """The call did not finish within its deadline."""

    code = "DEADLINE_EXCEEDED"


class ResourceExhausted(WtmError):
    """A limit was reached (a quota, a message size); the same call may pass later."""

    code = "RESOURCE_EXHAUSTED"


class DataLoss(WtmError):
    """What arrived does not match what was stored (a digest differs)."""

    code = "DATA_LOSS"


class Internal(WtmError):
    """The service failed unexpectedly; its log has the details under the error id."""

    code = "INTERNAL"


BY_CODE: dict[str, type[WtmError]] = {
    c.code: c
    for c in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Unauthenticated,
        Unavailable,
        Unimplemented,
        PermissionDenied,
        DeadlineExceeded,
        ResourceExhausted,
        DataLoss,
        Internal,
    )
}
