"""Who calls the gateway, and how its answers to a refusal look: the caller's key and
namespace (a bearer token, or the dashboard's cookies), the SDK client that presents them
(the dependency of every API route), and gRPC statuses as HTTP statuses and error bodies.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlparse

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from clients.aio import AsyncClient
from clients.errors import InvalidArgument, PermissionDenied, Unauthenticated, WtmError
from services.gateway import models as m

KEY_COOKIE = "wtm_key"
NAMESPACE_COOKIE = "wtm_namespace"
NAMESPACE_HEADER = "wtm-namespace"
# gRPC status -> HTTP status (Google's API design guide's mapping).
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def ws_close_code(code: str) -> int:
    """A WebSocket's close code for a refusal: 4000 + the HTTP status."""
    return 4000 + HTTP_STATUS.get(code, 500)


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": m.ErrorBody} for status in (400, 401, 403, 404, 409, 503)
}


def error_response(exc: WtmError) -> JSONResponse:
    body = m.ErrorBody(error=m.ErrorDetail(code=exc.code, message=exc.message, field=exc.field))
    return JSONResponse(body.model_dump(), status_code=HTTP_STATUS.get(exc.code, 500))


def invalid_request(exc: RequestValidationError) -> JSONResponse:
    """A request FastAPI could not read (not JSON, a field of the wrong type, a query
    parameter out of its range), answered as every other refusal is: 400 and
    ``{error: {code: INVALID_ARGUMENT, message, field}}``, the message naming the field
    (FastAPI's own answer is a 422 of another shape). The first problem is named."""
    problems = exc.errors()
    problem: dict[str, Any] = dict(problems[0]) if problems else {"msg": "cannot be read"}
    where = [str(p) for p in problem.get("loc", ()) if p not in ("body", "query", "path")]
    if problem.get("type") == "json_invalid":
        field = "body"
        said = f"is not JSON: {(problem.get('ctx') or {}).get('error', 'cannot be read')}"
    else:  # pydantic's words, said of the field: "page_size: should be greater than ..."
        field = ".".join(where) or "body"
        said = str(problem.get("msg", "is not valid")).removeprefix("Value error, ")
        said = "is required" if problem.get("type") == "missing" else said
        said = said.replace("Input should be", "should be", 1)
    return error_response(InvalidArgument(said, field=field))


def same_origin(headers: Any) -> bool:
    """A browser's cross-site request carries another site's Origin: refused for calls
    that the cookie authenticates (the cookie is SameSite=Strict too)."""
    origin = headers.get("origin")
    if not origin:
        return True
    return urlparse(origin).netloc == headers.get("host", "")


def credentials(headers: Any, cookies: dict[str, str]) -> tuple[str, str, bool]:
    """(key, namespace, whether from the cookie) of a request."""
    header = headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip(), headers.get(NAMESPACE_HEADER, ""), False
    key = cookies.get(KEY_COOKIE, "")
    return key, headers.get(NAMESPACE_HEADER, "") or cookies.get(NAMESPACE_COOKIE, ""), True


def client_of(app: Any, key: str, namespace: str) -> AsyncClient:
    """The services' client, presenting ``key`` (refused here when keys are required and
    there is none)."""
    if app.state.settings.auth and not key:
        raise Unauthenticated(
            "no API key: send Authorization: Bearer <key>, or sign in on the dashboard",
            field="authorization",
        )
    base: AsyncClient = app.state.services
    return base.acting_as(key, namespace)


async def caller(request: Request) -> AsyncClient:
    """The dependency of every API route: the caller's client."""
    key, namespace, from_cookie = credentials(request.headers, request.cookies)
    if from_cookie and request.method not in ("GET", "HEAD") and not same_origin(request.headers):
        raise PermissionDenied("cross-site request refused", field="origin")
    return client_of(request.app, key, namespace)


Caller = Annotated[AsyncClient, Depends(caller)]
