"""Download a chat: Markdown (the branch on screen), JSON (the whole tree), or a zip of both with its files;
at once, or as a background job (one chat, or every chat in one zip) to fetch when it is ready."""

from __future__ import annotations

import asyncio
import pathlib
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict
from starlette.types import Receive, Scope, Send

from convo.api.deps import CurrentUser, Id, ServicesDep
from convo.db.models import ExportJob

router = APIRouter(prefix="/api", tags=["exports"])


def _disposition(filename: str) -> str:
    # An ASCII name for old clients, the real one (any script) for the rest (RFC 6266 / 5987).
    fallback = filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"


@router.get(
    "/threads/{thread_id}/export",
    response_class=Response,
    responses={200: {"content": {"text/markdown": {}, "application/json": {}, "application/zip": {}}}},
)
async def export_thread(
    thread_id: Id, user: CurrentUser, services: ServicesDep, format: Literal["md", "json", "zip"] = Query("json")
) -> Response:
    exported = await services.exports.thread(user, thread_id, format)
    return _OnceFileResponse(exported.path, media_type=exported.media_type,
                             headers={"Content-Disposition": _disposition(exported.filename)})


class _OnceFileResponse(FileResponse):
    """A file made for this response alone: sent from disk, then deleted, even if the client hung up."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await asyncio.to_thread(pathlib.Path(self.path).unlink, missing_ok=True)


class ExportJobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["md", "json", "zip"] = "zip"


class AllExportJobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Literal["all"] = "all"
    format: Literal["zip"] = "zip"


class ExportJobPublic(BaseModel):
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: float
    format: str
    download_url: str | None = None
    expires_at: datetime | None = None
    error: str | None = None

    @classmethod
    def of(cls, job: ExportJob) -> ExportJobPublic:
        ready = job.status == "succeeded"
        return cls(job_id=job.id, status=job.status, progress=job.progress, format=job.format,  # type: ignore[arg-type]
                   download_url=f"/api/export/jobs/{job.id}/download" if ready else None,
                   expires_at=job.expires_at, error=job.error)


JobId = Annotated[str, Path(min_length=32, max_length=32, pattern="^[0-9a-f]{32}$")]


@router.post("/threads/{thread_id}/export/jobs", status_code=202)
async def start_thread_export(
    thread_id: Id, body: ExportJobCreate, user: CurrentUser, services: ServicesDep
) -> ExportJobPublic:
    return ExportJobPublic.of(await services.exports.start_job(user, body.format, thread_id))


@router.post("/export/jobs", status_code=202)
async def start_full_export(body: AllExportJobCreate, user: CurrentUser, services: ServicesDep) -> ExportJobPublic:
    return ExportJobPublic.of(await services.exports.start_job(user, body.format))


@router.get("/export/jobs/{job_id}")
async def export_job(job_id: JobId, user: CurrentUser, services: ServicesDep) -> ExportJobPublic:
    return ExportJobPublic.of(await services.exports.job(user, job_id))


@router.get("/export/jobs/{job_id}/download", response_class=FileResponse)
async def download_export(job_id: JobId, user: CurrentUser, services: ServicesDep) -> FileResponse:
    path, filename, media_type = await services.exports.download(user, job_id)
    return FileResponse(path, media_type=media_type, headers={"Content-Disposition": _disposition(filename)})
