"""Domain errors. Domain code raises these; one interceptor maps them to gRPC status codes.

Every error names the field (or file) it is about, so a user can fix the request.
"""

from __future__ import annotations


class WtmError(Exception):
    """Base of all domain errors: a message that names ``field`` when there is one."""

    code = "INTERNAL"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.message = f"{field}: {message}" if field else message
        super().__init__(self.message)


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
