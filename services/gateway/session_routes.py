"""The gateway's routes of the dashboard's session: its settings, and signing in and out
(the key kept in an HttpOnly cookie, judged by the services on the way in)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from clients import __version__
from clients.errors import PermissionDenied, Unauthenticated
from services.gateway import models as m
from services.gateway.callers import (
    ERRORS,
    KEY_COOKIE,
    NAMESPACE_COOKIE,
    client_of,
    credentials,
    same_origin,
)
from services.gateway.settings import GatewaySettings

router = APIRouter()


def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


@router.get("/api/v1/config", response_model=m.DashboardConfig, tags=["dashboard"])
async def config(request: Request) -> m.DashboardConfig:
    settings = _settings(request)
    return m.DashboardConfig(
        jaeger_url=settings.jaeger_url, auth=settings.auth, version=__version__
    )


@router.post(
    "/api/v1/session",
    response_model=m.Session,
    responses=ERRORS,
    tags=["dashboard"],
    summary="Sign in: check the key, then keep it in an HttpOnly cookie",
)
async def login(body: m.Login, request: Request, response: Response) -> m.Session:
    if not same_origin(request.headers):
        raise PermissionDenied("cross-site request refused", field="origin")
    client = client_of(request.app, body.api_key.strip(), body.namespace.strip())
    await client.list_runs_page(page_size=1)  # the services judge the key
    secure = bool(_settings(request).tls_cert)
    for name, value in (
        (KEY_COOKIE, body.api_key.strip()),
        (NAMESPACE_COOKIE, body.namespace.strip()),
    ):
        response.set_cookie(name, value, httponly=True, samesite="strict", secure=secure, path="/")
    return m.Session(authenticated=True, namespace=body.namespace.strip())


@router.get("/api/v1/session", response_model=m.Session, tags=["dashboard"])
async def session(request: Request) -> m.Session:
    key, namespace, _ = credentials(request.headers, request.cookies)
    if _settings(request).auth and not key:
        return m.Session(authenticated=False)
    try:
        await client_of(request.app, key, namespace).list_runs_page(page_size=1)
    except (Unauthenticated, PermissionDenied):
        return m.Session(authenticated=False)
    return m.Session(authenticated=True, namespace=namespace)


@router.delete("/api/v1/session", response_model=m.Session, tags=["dashboard"])
async def logout(response: Response) -> m.Session:
    response.delete_cookie(KEY_COOKIE, path="/")
    response.delete_cookie(NAMESPACE_COOKIE, path="/")
    return m.Session(authenticated=False)
