"""Bring chats in: a Convo export (JSON or zip) or ChatGPT's conversations.json."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from convo.api.deps import CurrentUser, ServicesDep
from convo.api.files import UPLOAD_BODY, uploaded_file
from convo.domain.files import TooLarge

router = APIRouter(prefix="/api", tags=["imports"])


class ImportedThread(BaseModel):
    id: int
    title: str


class ImportResult(BaseModel):
    threads: list[ImportedThread]


@router.post("/import", openapi_extra=UPLOAD_BODY, responses={413: {"description": "Too large"}})
async def import_chats(request: Request, user: CurrentUser, services: ServicesDep) -> ImportResult:
    # The upload limit, as deploy/nginx.conf's client_max_body_size assumes: a bigger import limit would
    # only meet nginx's own 413 behind the proxy. A zip may inflate to a few times this (domain/imports.py).
    limit = services.files.max_bytes
    async with uploaded_file(request, limit, "import limit") as upload:
        data = await upload.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"The file is larger than the {limit // (1024 * 1024)} MB import limit.", limit_bytes=limit)
    threads = await services.imports.run(user, data)
    return ImportResult(threads=[ImportedThread(id=t.id, title=t.title) for t in threads])
