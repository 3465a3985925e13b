"""The gateway's routes of the catalog (tasks and pipelines, read only) and of artifacts
(upload for a run's input, download of any a run names). Each is one ``AsyncClient`` call
made as the caller."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.gateway import models as m
from services.gateway.callers import ERRORS, Caller

router = APIRouter()
MAX_UPLOAD_BYTES = 64 * 1024 * 1024


@router.get("/api/v1/tasks", response_model=list[m.Task], responses=ERRORS, tags=["catalog"])
async def list_tasks(
    client: Caller,
    task_id: str = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[m.Task]:
    """Task versions by task id, newest version first."""
    found = []
    tasks = client.list_tasks(task_id=task_id) if task_id else client.list_tasks()
    async for t in tasks:
        found.append(m.of(m.Task, t))
        if len(found) >= limit:
            break
    return found


@router.get("/api/v1/tasks/{ref}", response_model=m.Task, responses=ERRORS, tags=["catalog"])
async def get_task(ref: str, client: Caller) -> m.Task:
    """One task version: ``task_id`` (latest) or ``task_id@version``."""
    return m.of(m.Task, await client.get_task(ref))


@router.get(
    "/api/v1/pipelines", response_model=list[m.Pipeline], responses=ERRORS, tags=["catalog"]
)
async def list_pipelines(
    client: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[m.Pipeline]:
    found = []
    async for p in client.list_pipelines():
        found.append(m.of(m.Pipeline, p))
        if len(found) >= limit:
            break
    return found


@router.get(
    "/api/v1/pipelines/{ref}", response_model=m.Pipeline, responses=ERRORS, tags=["catalog"]
)
async def get_pipeline(ref: str, client: Caller) -> m.Pipeline:
    """One pipeline version: ``pipeline_id`` (latest) or ``pipeline_id@version``."""
    return m.of(m.Pipeline, await client.get_pipeline(ref))


@router.post(
    "/api/v1/artifacts",
    response_model=m.ArtifactRef,
    status_code=201,
    responses=ERRORS,
    tags=["artifacts"],
    summary="Store the request body as an artifact (for a run's input)",
)
async def upload_artifact(
    request: Request, client: Caller, filename: Annotated[str, Query(min_length=1)]
) -> m.ArtifactRef:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_UPLOAD_BYTES:
            return JSONResponse(  # type: ignore[return-value]
                m.ErrorBody(
                    error=m.ErrorDetail(
                        code="RESOURCE_EXHAUSTED",
                        message=f"larger than {MAX_UPLOAD_BYTES} bytes",
                        field="body",
                    )
                ).model_dump(),
                status_code=413,
            )
    return m.ArtifactRef(uri=await client.upload_artifact_data(filename, bytes(data)))


@router.get(
    "/api/v1/artifacts",
    responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}}},
    tags=["artifacts"],
)
async def download_artifact(uri: str, client: Caller) -> Response:
    data = await client.download_artifact(uri)
    kind = _image_type(data)
    name = Path(urlparse(uri).path).name or "artifact"
    disposition = "inline" if kind else "attachment"
    return Response(
        data,
        media_type=kind or mimetypes.guess_type(name)[0] or "application/octet-stream",
        headers={"Content-Disposition": f'{disposition}; filename="{name}"'},
    )


def _image_type(data: bytes) -> str:
    """The image type of ``data`` by its magic bytes ("" when not a JPEG, PNG or GIF):
    only those are shown inline."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return ""
