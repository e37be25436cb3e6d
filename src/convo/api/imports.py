"""Bring chats in: a Convo export (JSON or zip) or ChatGPT's conversations.json."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from convo.api.deps import CurrentUser, ServicesDep
from convo.api.files import UPLOAD_BODY
from convo.domain.files import TooLarge, UnsupportedType
from convo.errors import InvalidInput

router = APIRouter(prefix="/api", tags=["imports"])

# A ChatGPT history outgrows one attachment quickly; exports are read whole, so there is still a bound.
IMPORT_SIZE_FACTOR = 8


class ImportedThread(BaseModel):
    id: int
    title: str


class ImportResult(BaseModel):
    threads: list[ImportedThread]


@router.post("/import", openapi_extra=UPLOAD_BODY, responses={413: {"description": "Too large"}})
async def import_chats(request: Request, user: CurrentUser, services: ServicesDep) -> ImportResult:
    limit = services.files.max_bytes * IMPORT_SIZE_FACTOR
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise TooLarge(f"The file is larger than the {limit // (1024 * 1024)} MB import limit.", limit_bytes=limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UnsupportedType("Send the file as multipart/form-data in a field named `file`.")
    form = await request.form(max_files=1, max_fields=10, max_part_size=limit)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("Send the file in a multipart field named `file`.", code="missing_file")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise TooLarge(f"The file is larger than the {limit // (1024 * 1024)} MB import limit.", limit_bytes=limit)
    finally:
        await form.close()
    threads = await services.imports.run(user, data)
    return ImportResult(threads=[ImportedThread(id=t.id, title=t.title) for t in threads])
