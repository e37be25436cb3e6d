"""A chat as a file: JSON holds the whole tree (every version, with its meta), Markdown the branch the
user is on, and a zip both plus the original attachments. Exports are made on request, or as background
jobs (one chat, or all of a user's chats in one zip) whose file is kept for EXPORT_TTL."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Literal

from sqlalchemy import delete, select, update

from convo import observability as obs
from convo.db.models import Attachment, ExportJob, Message, Thread, User, utcnow
from convo.db.session import Database
from convo.domain.threads import active_branch, owned_thread
from convo.errors import InvalidInput, NotFound
from convo.runtime.jobs import JobRunner

log = logging.getLogger(__name__)

Format = Literal["md", "json", "zip"]
FORMAT_VERSION = 1
EXPORT_JOB = "export"
EXPORT_TTL = timedelta(hours=24)
_MEDIA = {"md": "text/markdown; charset=utf-8", "json": "application/json", "zip": "application/zip"}
_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}


@dataclass(frozen=True)
class ExportFile:
    filename: str
    media_type: str
    body: bytes


@dataclass(frozen=True)
class _Chat:
    stem: str
    document: dict[str, Any]
    markdown: bytes
    attachments: list[Attachment]


class Exports:
    def __init__(self, db: Database, uploads: Path, jobs: JobRunner, folder: Path) -> None:
        self.db = db
        self.uploads = uploads
        self.jobs = jobs
        self.folder = folder
        jobs.register(EXPORT_JOB, self._run_job, on_error=self._job_failed)

    # -- on request ----------------------------------------------------------------------------

    async def thread(self, user: User, thread_id: int, fmt: Format) -> ExportFile:
        chat = await self._collect(user.id, thread_id)
        if fmt == "json":
            return ExportFile(f"{chat.stem}.json", _MEDIA["json"], _json(chat.document))
        if fmt == "md":
            return ExportFile(f"{chat.stem}.md", _MEDIA["md"], chat.markdown)
        buffer = io.BytesIO()
        await asyncio.to_thread(self._zip, [chat], buffer, nested=False)
        return ExportFile(f"{chat.stem}.zip", _MEDIA["zip"], buffer.getvalue())

    async def _collect(self, user_id: int, thread_id: int) -> _Chat:
        async with self.db.read() as session:
            thread = await owned_thread(session, User(id=user_id), thread_id)
            messages = list(await session.scalars(
                select(Message).where(Message.thread_id == thread.id, Message.user_id == user_id).order_by(Message.id)))
            branch = [view.message for view in await active_branch(session, thread)]
            attachments = list(await session.scalars(
                select(Attachment).where(Attachment.thread_id == thread.id, Attachment.user_id == user_id)
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
        return _Chat(stem, document, _markdown(thread.title, branch).encode(), attachments)

    def _zip(self, chats: list[_Chat], target: BinaryIO, *, nested: bool) -> None:
        """One chat: its files at the top. Several: a folder each (named with the id: titles repeat)."""
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for chat in chats:
                prefix = f"{chat.stem}-{chat.document['thread']['id']}/" if nested else ""
                archive.writestr(f"{prefix}{chat.stem}.json", _json(chat.document))
                archive.writestr(f"{prefix}{chat.stem}.md", chat.markdown)
                for attachment, entry in zip(chat.attachments, chat.document["attachments"], strict=True):
                    original = self.uploads / attachment.storage_path
                    if original.is_file():  # a file whose original is gone is still listed in the JSON
                        archive.write(original, prefix + entry["path"])

    # -- in the background ---------------------------------------------------------------------

    async def start_job(self, user: User, fmt: Format, thread_id: int | None = None) -> ExportJob:
        """Queue an export of one chat (`thread_id`) or of all the user's chats (a zip)."""
        if thread_id is None and fmt != "zip":
            raise InvalidInput("An export of all chats is a zip.", code="invalid_format")
        await self.sweep()
        async with self.db.write() as session:
            if thread_id is not None:
                await owned_thread(session, user, thread_id)
            job = ExportJob(id=uuid.uuid4().hex, user_id=user.id, thread_id=thread_id,
                            scope="thread" if thread_id is not None else "all", format=fmt, status="queued",
                            progress=0.0, created_at=utcnow())
            session.add(job)
        await self.jobs.enqueue(EXPORT_JOB, {"job_id": job.id})
        return job

    async def job(self, user: User, job_id: str) -> ExportJob:
        async with self.db.read() as session:
            job = await session.get(ExportJob, job_id)
        if job is None or job.user_id != user.id:
            raise NotFound("No such export.")
        return job

    async def download(self, user: User, job_id: str) -> tuple[Path, str, str]:
        job = await self.job(user, job_id)
        path = self.folder / (job.path or "")
        if job.status != "succeeded" or not job.path or not path.is_file():
            raise NotFound("This export is not ready, or has expired.", code="export_unavailable")
        return path, job.filename or path.name, _MEDIA[job.format]

    async def _run_job(self, args: dict[str, Any]) -> None:
        job_id = str(args["job_id"])
        async with self.db.write() as session:
            job = await session.get(ExportJob, job_id)
            if job is None or job.status not in ("queued", "running"):
                return
            job.status = "running"
            user_id, scope, fmt, thread_id = job.user_id, job.scope, job.format, job.thread_id
        folder = self.folder / str(user_id)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        if scope == "thread":
            if thread_id is None:
                raise NotFound("The chat was deleted before its export was made.")
            exported = await self.thread(User(id=user_id), thread_id, fmt)  # type: ignore[arg-type]
            filename = exported.filename
            await asyncio.to_thread((folder / f"{job_id}.{fmt}").write_bytes, exported.body)
        else:
            async with self.db.read() as session:
                ids = list(await session.scalars(
                    select(Thread.id).where(Thread.user_id == user_id).order_by(Thread.id)))
            chats = []
            for n, thread in enumerate(ids, start=1):
                try:
                    chats.append(await self._collect(user_id, thread))
                except NotFound:  # deleted meanwhile
                    continue
                if n % 20 == 0 or n == len(ids):
                    await self._progress(job_id, 0.9 * n / len(ids))
            target = folder / f"{job_id}.zip"
            with target.open("wb") as out:
                await asyncio.to_thread(self._zip, chats, out, nested=True)
            filename = f"convo-export-{utcnow():%Y-%m-%d}.zip"
        now = utcnow()
        async with self.db.write() as session:
            await session.execute(update(ExportJob).where(ExportJob.id == job_id).values(
                status="succeeded", progress=1.0, path=f"{user_id}/{job_id}.{fmt}", filename=filename,
                finished_at=now, expires_at=now + EXPORT_TTL))
        obs.EXPORT_JOBS.labels("succeeded").inc()

    async def _progress(self, job_id: str, progress: float) -> None:
        async with self.db.write() as session:
            await session.execute(update(ExportJob).where(ExportJob.id == job_id).values(progress=round(progress, 3)))

    async def _job_failed(self, args: dict[str, Any], exc: BaseException) -> None:
        message = getattr(exc, "message", None) or f"The export failed ({type(exc).__name__})."
        async with self.db.write() as session:
            await session.execute(update(ExportJob).where(ExportJob.id == str(args["job_id"])).values(
                status="failed", error=message, finished_at=utcnow()))
        obs.EXPORT_JOBS.labels("failed").inc()

    async def resume(self) -> None:
        """Queue again what a stopped process left queued or half done."""
        async with self.db.write() as session:
            ids = list(await session.scalars(select(ExportJob.id).where(ExportJob.status.in_(("queued", "running")))))
            if ids:
                await session.execute(update(ExportJob).where(ExportJob.id.in_(ids)).values(status="queued"))
        for job_id in ids:
            await self.jobs.enqueue(EXPORT_JOB, {"job_id": job_id})

    async def sweep(self) -> int:
        """Forget expired exports and delete their files; returns how many."""
        async with self.db.write() as session:
            expired = list(await session.scalars(select(ExportJob).where(ExportJob.expires_at < utcnow())))
            if expired:
                await session.execute(delete(ExportJob).where(ExportJob.id.in_([j.id for j in expired])))
        for job in expired:
            if job.path:
                await asyncio.to_thread((self.folder / job.path).unlink, missing_ok=True)
        return len(expired)


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
