"""Download a chat: Markdown (the branch on screen), JSON (the whole tree), or a zip of both with its files."""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Response

from convo.api.deps import CurrentUser, Id, ServicesDep

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
    return Response(exported.body, media_type=exported.media_type,
                    headers={"Content-Disposition": _disposition(exported.filename)})
