"""A chat as a file: JSON holds the whole tree (every version, with its meta), Markdown the branch the
user is on, and a zip both plus the original attachments."""

from __future__ import annotations

import asyncio
import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select

from convo.db.models import Attachment, Message, User
from convo.db.session import Database
from convo.domain.threads import active_branch, owned_thread

Format = Literal["md", "json", "zip"]
FORMAT_VERSION = 1
_MEDIA = {"md": "text/markdown; charset=utf-8", "json": "application/json", "zip": "application/zip"}
_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}


@dataclass(frozen=True)
class ExportFile:
    filename: str
    media_type: str
    body: bytes


class Exports:
    def __init__(self, db: Database, uploads: Path) -> None:
        self.db = db
        self.uploads = uploads

    async def thread(self, user: User, thread_id: int, fmt: Format) -> ExportFile:
        async with self.db.read() as session:
            thread = await owned_thread(session, user, thread_id)
            messages = list(await session.scalars(
                select(Message).where(Message.thread_id == thread.id, Message.user_id == user.id).order_by(Message.id)))
            branch = [view.message for view in await active_branch(session, thread)]
            attachments = list(await session.scalars(
                select(Attachment).where(Attachment.thread_id == thread.id, Attachment.user_id == user.id)
                .order_by(Attachment.id)))
        document = {
            "format": "convo.thread",
            "version": FORMAT_VERSION,
            "thread": {
                "id": thread.id, "title": thread.title, "model": thread.model, "temperature": thread.temperature,
                "system_prompt": thread.system_prompt, "current_leaf_id": thread.current_leaf_id,
                "created_at": _time(thread.created_at), "updated_at": _time(thread.updated_at),
            },
            "messages": [
                {"id": m.id, "parent_id": m.parent_id, "role": m.role, "content": m.content, "status": m.status,
                 "model": m.model, "temperature": m.temperature, "meta": m.meta, "created_at": _time(m.created_at)}
                for m in messages
            ],
            "attachments": [
                {"id": a.id, "filename": a.filename, "content_type": a.content_type, "size": a.size,
                 "sha256": a.sha256, "status": a.status, "created_at": _time(a.created_at),
                 "path": f"attachments/{a.id}-{a.filename}"}
                for a in attachments
            ],
        }
        stem = _slug(thread.title) or f"chat-{thread.id}"
        if fmt == "json":
            return ExportFile(f"{stem}.json", _MEDIA["json"], _json(document))
        markdown = _markdown(thread.title, branch).encode()
        if fmt == "md":
            return ExportFile(f"{stem}.md", _MEDIA["md"], markdown)
        body = await asyncio.to_thread(self._zip, document, markdown, stem, attachments)
        return ExportFile(f"{stem}.zip", _MEDIA["zip"], body)

    def _zip(self, document: dict[str, Any], markdown: bytes, stem: str, attachments: list[Attachment]) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{stem}.json", _json(document))
            archive.writestr(f"{stem}.md", markdown)
            for attachment, entry in zip(attachments, document["attachments"], strict=True):
                original = self.uploads / attachment.storage_path
                if original.is_file():  # a file whose original is gone is still listed in the JSON
                    archive.write(original, entry["path"])
        return out.getvalue()


def _markdown(title: str, branch: list[Message]) -> str:
    parts = [f"# {title or 'Untitled chat'}\n"]
    for message in branch:
        heading = _ROLE_HEADINGS.get(message.role, message.role)
        if message.role == "assistant" and message.model:
            heading += f" ({message.model})"
        if message.status not in ("complete", "streaming"):
            heading += f" — {message.status}"
        parts.append(f"## {heading}\n\n{message.content.strip()}\n")
    return "\n".join(parts)


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, indent=2).encode()


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _slug(title: str) -> str:
    """A file name from the title: letters of any script, digits, dashes."""
    return re.sub(r"[^\w]+", "-", title, flags=re.UNICODE).strip("-_")[:80]
