"""Attachments: upload into a thread, list, read, download the original, delete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.types import Message

from convo.api.deps import CurrentUser, Id, ServicesDep
from convo.db.models import Attachment
from convo.domain.files import TooLarge, UnsupportedType
from convo.errors import InvalidInput

router = APIRouter(tags=["files"])

# Multipart framing around the file: boundaries, headers, a filename.
_MULTIPART_SLACK = 64 * 1024


class AttachmentPublic(BaseModel):
    id: int
    thread_id: int
    filename: str
    content_type: str
    size: int
    status: str
    chunk_count: int
    error: str | None = None
    created_at: datetime

    @classmethod
    def of(cls, a: Attachment) -> AttachmentPublic:
        return cls(id=a.id, thread_id=a.thread_id, filename=a.filename, content_type=a.content_type, size=a.size,
                   status=a.status, chunk_count=a.chunk_count, error=a.error, created_at=a.created_at)


class AttachmentsPublic(BaseModel):
    items: list[AttachmentPublic]


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}},
        }}},
    }
}


async def _pieces(upload: UploadFile) -> AsyncIterator[bytes]:
    while piece := await upload.read(1024 * 1024):
        yield piece


def _too_large(limit: int, what: str) -> TooLarge:
    return TooLarge(f"The file is larger than the {limit // (1024 * 1024)} MB {what}.", limit_bytes=limit)


def _counted(request: Request, limit: int, what: str) -> Request:
    """The request with a body that fails as soon as more than `limit` + framing has come in, whatever
    Content-Length said (or a chunked body did not say): the form parser spools no more than that."""
    receive, received = request.receive, 0

    async def counting() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit + _MULTIPART_SLACK:
                raise _too_large(limit, what)
        return message

    return Request(request.scope, counting)


@asynccontextmanager
async def uploaded_file(request: Request, limit: int, what: str = "limit") -> AsyncIterator[UploadFile]:
    """The multipart field `file` of the request, refused with 413 once the body passes `limit` (declared
    or counted while it streams in); the form's spooled files are closed afterwards. Check who may
    upload before calling this: it reads the body."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + _MULTIPART_SLACK:
        raise _too_large(limit, what)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UnsupportedType("Send the file as multipart/form-data in a field named `file`.")
    form = await _counted(request, limit, what).form(max_files=1, max_fields=10)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("Send the file in a multipart field named `file`.", code="missing_file")
        yield upload
    finally:
        await form.close()


@router.post("/api/threads/{thread_id}/attachments", status_code=201, openapi_extra=UPLOAD_BODY,
             responses={413: {"description": "Too large, or the user's storage is full"},
                        415: {"description": "Unsupported type"}})
async def upload(thread_id: Id, request: Request, user: CurrentUser, services: ServicesDep) -> AttachmentPublic:
    # A foreign thread or a full storage answers before the body is read.
    await services.files.admit(user, thread_id)
    async with uploaded_file(request, services.files.max_bytes) as upload:
        attachment = await services.files.upload(user, thread_id, upload.filename or "upload", _pieces(upload))
    return AttachmentPublic.of(attachment)


@router.get("/api/threads/{thread_id}/attachments")
async def list_attachments(thread_id: Id, user: CurrentUser, services: ServicesDep) -> AttachmentsPublic:
    return AttachmentsPublic(items=[AttachmentPublic.of(a) for a in await services.files.list(user, thread_id)])


@router.get("/api/attachments/{attachment_id}")
async def get_attachment(attachment_id: Id, user: CurrentUser, services: ServicesDep) -> AttachmentPublic:
    return AttachmentPublic.of(await services.files.get(user, attachment_id))


@router.get("/api/attachments/{attachment_id}/content", response_class=FileResponse)
async def attachment_content(attachment_id: Id, user: CurrentUser, services: ServicesDep) -> FileResponse:
    content = await services.files.content(user, attachment_id)
    # Always a download: an uploaded HTML file must never run as a page of this origin.
    return FileResponse(
        content.path, media_type=content.content_type,
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(content.filename)}",
                 "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"},
    )


@router.delete("/api/attachments/{attachment_id}", status_code=204)
async def delete_attachment(attachment_id: Id, user: CurrentUser, services: ServicesDep) -> None:
    await services.files.delete(user, attachment_id)
