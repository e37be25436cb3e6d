"""A chat as a file: JSON holds the whole tree (every version, with its meta), Markdown the branch the
user is on, and a zip both plus the original attachments. Exports are made on request, or as background
jobs (one chat, or all of a user's chats in one zip) whose file is kept for EXPORT_TTL."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import math
import os
import re
import shutil
import time
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Literal

from sqlalchemy import delete, func, select, update

from convo import observability as obs
from convo.db.models import Attachment, ExportJob, Message, Thread, User, utcnow
from convo.db.session import Database
from convo.domain.threads import active_branch, owned_thread
from convo.errors import ConvoError, Gone, InvalidInput, NotFound, TooManyRequests
from convo.runtime.jobs import JobRunner

log = logging.getLogger(__name__)

Format = Literal["md", "json", "zip"]
FORMAT_VERSION = 1
EXPORT_JOB = "export"
EXPORT_TTL = timedelta(hours=24)
# Per user: each job may copy every upload into a zip kept for a day, on the job slot ingestion shares (M3).
ACTIVE_JOBS = 2  # queued or running at once
DAILY_JOBS = 20  # started in any 24 hours
BUSY_RETRY_SECONDS = 30
# A job the process died under this many times is failed rather than started again (M5: an export that
# kills the process would otherwise do so at every start).
MAX_ATTEMPTS = 2
_MEDIA = {"md": "text/markdown; charset=utf-8", "json": "application/json", "zip": "application/zip"}
_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}


class ExportInterrupted(ConvoError):
    status = 500
    code = "export_interrupted"


@dataclass(frozen=True)
class ExportFile:
    """An export written to a file of its own under the scratch folder; whoever gets it deletes it."""

    filename: str
    media_type: str
    path: Path


@dataclass(frozen=True)
class _Chat:
    stem: str
    thread: Thread
    messages: list[Message]
    branch: list[Message]
    attachments: list[Attachment]

    def document(self) -> dict[str, Any]:
        thread = self.thread
        return {
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
                for m in self.messages
            ],
            "attachments": [
                {"id": a.id, "filename": a.filename, "content_type": a.content_type, "size": a.size,
                 "sha256": a.sha256, "status": a.status, "created_at": _time(a.created_at),
                 "path": _attachment_path(a)}
                for a in self.attachments
            ],
        }

    def markdown(self) -> bytes:
        return _markdown(self.thread.title, self.branch).encode()


class Exports:
    def __init__(self, db: Database, uploads: Path, jobs: JobRunner, folder: Path, sweep_seconds: float = 300.0
                 ) -> None:
        self.db = db
        self.uploads = uploads
        self.jobs = jobs
        self.folder = folder
        # Exports being written, and on-request exports being sent; nothing stays here.
        self.scratch = folder / "tmp"
        self.sweep_seconds = sweep_seconds
        self._sweeper: asyncio.Task[None] | None = None
        jobs.register(EXPORT_JOB, self._run_job, on_error=self._job_failed)

    async def start(self, *, sole_process: bool) -> None:
        if sole_process:
            # What lies in the scratch folder was being written by a process that is gone, and what it
            # left queued or half done is queued again (with workers, they do that).
            await asyncio.to_thread(shutil.rmtree, self.scratch, ignore_errors=True)
            await self.resume()
        await self.sweep()
        self._sweeper = asyncio.create_task(self._sweep_periodically())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    # -- on request ----------------------------------------------------------------------------

    async def thread(self, user: User, thread_id: int, fmt: Format) -> ExportFile:
        chat = await self._collect(user.id, thread_id)
        path = await asyncio.to_thread(self._write, chat, fmt)
        return ExportFile(f"{chat.stem}.{fmt}", _MEDIA[fmt], path)

    async def _collect(self, user_id: int, thread_id: int) -> _Chat:
        async with self.db.read() as session:
            thread = await owned_thread(session, User(id=user_id), thread_id)
            messages = list(await session.scalars(
                select(Message).where(Message.thread_id == thread.id, Message.user_id == user_id).order_by(Message.id)))
            branch = [view.message for view in await active_branch(session, thread)]
            attachments = list(await session.scalars(
                select(Attachment).where(Attachment.thread_id == thread.id, Attachment.user_id == user_id)
                .order_by(Attachment.id)))
        return _Chat(_slug(thread.title) or f"chat-{thread.id}", thread, messages, branch, attachments)

    def _write(self, chat: _Chat, fmt: Format) -> Path:
        """Write one chat's export to a new scratch file, on disk as it is made (M5: zips of large files
        were built in memory); runs in a worker thread. Nothing half-written is left behind."""
        path = self._scratch_file(fmt)
        try:
            with path.open("wb") as out:
                if fmt == "zip":
                    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
                        self._add(archive, chat, "")
                elif fmt == "json":
                    _dump_json(chat.document(), out)
                else:
                    out.write(chat.markdown())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    async def _write_all(self, job_id: str, user_id: int) -> Path:
        """All the user's chats in one zip, a folder each (named with the id: titles repeat), read from
        the database one chat at a time."""
        async with self.db.read() as session:
            ids = list(await session.scalars(select(Thread.id).where(Thread.user_id == user_id).order_by(Thread.id)))
        path = await asyncio.to_thread(self._scratch_file, "zip")
        try:
            with path.open("wb") as out, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
                for n, thread_id in enumerate(ids, start=1):
                    try:
                        chat = await self._collect(user_id, thread_id)
                    except NotFound:  # deleted meanwhile
                        continue
                    await asyncio.to_thread(self._add, archive, chat, f"{chat.stem}-{thread_id}/")
                    if n % 20 == 0:
                        await self._progress(job_id, n / len(ids))
        except BaseException:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            raise
        return path

    def _add(self, archive: zipfile.ZipFile, chat: _Chat, prefix: str) -> None:
        """A chat's JSON, Markdown and original files, each streamed into the zip."""
        with archive.open(f"{prefix}{chat.stem}.json", "w") as entry:
            _dump_json(chat.document(), entry)
        archive.writestr(f"{prefix}{chat.stem}.md", chat.markdown())
        for attachment in chat.attachments:
            original = self.uploads / attachment.storage_path
            if original.is_file():  # a file whose original is gone is still listed in the JSON
                archive.write(original, prefix + _attachment_path(attachment))

    def _scratch_file(self, fmt: Format) -> Path:
        self.scratch.mkdir(parents=True, exist_ok=True)
        return self.scratch / f"{uuid.uuid4().hex}.{fmt}"

    # -- in the background ---------------------------------------------------------------------

    async def start_job(self, user: User, fmt: Format, thread_id: int | None = None) -> ExportJob:
        """Queue an export of one chat (`thread_id`) or of all the user's chats (a zip)."""
        if thread_id is None and fmt != "zip":
            raise InvalidInput("An export of all chats is a zip.", code="invalid_format")
        async with self.db.write() as session:
            if thread_id is not None:
                await owned_thread(session, user, thread_id)
            await self._within_limits(session, user.id)
            job = ExportJob(id=uuid.uuid4().hex, user_id=user.id, thread_id=thread_id,
                            scope="thread" if thread_id is not None else "all", format=fmt, status="queued",
                            progress=0.0, attempts=0, created_at=utcnow())
            session.add(job)
        await self.jobs.enqueue(EXPORT_JOB, {"job_id": job.id})
        return job

    async def _within_limits(self, session: Any, user_id: int) -> None:
        """Refuse a job past the user's limits (429 with how long to wait), inside the write transaction
        that adds it."""
        if not self.db.is_sqlite:  # the row lock orders one user's concurrent requests (SQLite: the writer lock)
            await session.execute(select(User.id).where(User.id == user_id).with_for_update())
        active = await session.scalar(select(func.count()).select_from(ExportJob).where(
            ExportJob.user_id == user_id, ExportJob.status.in_(("queued", "running"))))
        if active >= ACTIVE_JOBS:
            raise TooManyRequests(f"You already have {active} exports in progress; start another when one is done.",
                              code="export_busy", retry_after=BUSY_RETRY_SECONDS)
        # Rows outlive the window: a job expires a day after it finished, never sooner.
        now = utcnow()
        started = list(await session.scalars(select(ExportJob.created_at).where(
            ExportJob.user_id == user_id, ExportJob.created_at > now - timedelta(days=1)).order_by(ExportJob.created_at)))
        if len(started) >= DAILY_JOBS:
            frees_at = started[len(started) - DAILY_JOBS] + timedelta(days=1)
            raise TooManyRequests(f"You can start {DAILY_JOBS} exports a day; the next one can start at "
                              f"{frees_at:%H:%M} UTC.", code="export_daily_limit",
                              retry_after=max(1, math.ceil((frees_at - now).total_seconds())))

    async def job(self, user: User, job_id: str) -> ExportJob:
        async with self.db.read() as session:
            job = await session.get(ExportJob, job_id)
        if job is None or job.user_id != user.id:
            raise NotFound("No such export.")
        return job

    async def download(self, user: User, job_id: str) -> tuple[Path, str, str]:
        job = await self.job(user, job_id)
        if job.expires_at is not None and job.expires_at <= utcnow():
            await self._forget([job])
            raise Gone("This export has expired (exports are kept for a day); start a new one.",
                       code="export_expired")
        path = self._file(job)
        if job.status != "succeeded" or not await asyncio.to_thread(path.is_file):
            raise NotFound("This export is not ready.", code="export_unavailable")
        return path, job.filename or path.name, _MEDIA[job.format]

    async def _run_job(self, args: dict[str, Any]) -> None:
        job_id = str(args["job_id"])
        async with self.db.write() as session:
            job = await session.get(ExportJob, job_id)
            if job is None or job.status not in ("queued", "running"):
                return  # deleted, or done by an earlier delivery of the same job
            if job.status == "running" and job.attempts >= MAX_ATTEMPTS:
                raise ExportInterrupted(f"The export was interrupted {MAX_ATTEMPTS} times while being made, "
                                        "so it was given up.")
            job.status = "running"
            job.attempts += 1
            user_id, scope, fmt, thread_id = job.user_id, job.scope, job.format, job.thread_id
        if scope == "thread":
            if thread_id is None:
                raise NotFound("The chat was deleted before its export was made.")
            chat = await self._collect(user_id, thread_id)
            built = await asyncio.to_thread(self._write, chat, fmt)  # type: ignore[arg-type]
            filename = f"{chat.stem}.{fmt}"
        else:
            built = await self._write_all(job_id, user_id)
            filename = f"convo-export-{utcnow():%Y-%m-%d}.zip"
        target = self.folder / str(user_id) / f"{job_id}.{fmt}"
        try:
            await asyncio.to_thread(_move, built, target)
        except BaseException:
            built.unlink(missing_ok=True)
            raise
        now = utcnow()
        async with self.db.write() as session:
            # Guarded: of two deliveries of one job (a worker that died, then came back), one succeeds.
            finished = await session.execute(update(ExportJob).where(
                ExportJob.id == job_id, ExportJob.status == "running").values(
                status="succeeded", progress=1.0, path=f"{user_id}/{job_id}.{fmt}", filename=filename,
                finished_at=now, expires_at=now + EXPORT_TTL))
        if finished.rowcount:
            obs.EXPORT_JOBS.labels("succeeded").inc()

    async def _progress(self, job_id: str, progress: float) -> None:
        async with self.db.write() as session:
            await session.execute(update(ExportJob).where(ExportJob.id == job_id).values(progress=round(progress, 3)))

    async def _job_failed(self, args: dict[str, Any], exc: BaseException) -> None:
        message = getattr(exc, "message", None) or f"The export failed ({type(exc).__name__})."
        now = utcnow()
        async with self.db.write() as session:
            job = await session.get(ExportJob, str(args["job_id"]))
            if job is None:
                return
            # Its failure stays readable for a day, like a finished export; then the row goes too.
            job.status, job.error, job.finished_at, job.expires_at = "failed", message, now, now + EXPORT_TTL
            path = self._file(job)
        await asyncio.to_thread(path.unlink, missing_ok=True)  # in case it failed after the file was in place
        obs.EXPORT_JOBS.labels("failed").inc()

    async def resume(self, *, queued_before: datetime | None = None, started_before: datetime | None = None) -> None:
        """Queue again what a stopped process left queued or half done, except a job it was already
        running for the last allowed time: that one is failed. With workers of their own (scale mode),
        only jobs older than a job may take are looked at."""
        now = utcnow()
        queued = ExportJob.status == "queued"
        running = ExportJob.status == "running"
        if queued_before is not None:
            queued = queued & (ExportJob.created_at < queued_before)
        if started_before is not None:
            running = running & (ExportJob.created_at < started_before)
        async with self.db.write() as session:
            given_up = await session.execute(update(ExportJob).where(
                running, ExportJob.attempts >= MAX_ATTEMPTS).values(
                status="failed", finished_at=now, expires_at=now + EXPORT_TTL,
                error=f"The export was interrupted {MAX_ATTEMPTS} times while being made, so it was given up.",
            ))
            ids = list(await session.scalars(select(ExportJob.id).where(queued | running)))
            if ids:
                await session.execute(update(ExportJob).where(ExportJob.id.in_(ids)).values(status="queued"))
        if given_up.rowcount:
            log.warning("gave up %d export jobs interrupted %d times", given_up.rowcount, MAX_ATTEMPTS)
            obs.EXPORT_JOBS.labels("failed").inc(given_up.rowcount)
        for job_id in ids:
            await self.jobs.enqueue(EXPORT_JOB, {"job_id": job_id})

    async def sweep(self) -> int:
        """Forget expired exports (finished or failed) and delete their files, and scratch files older
        than a day (a send cut short); returns how many exports."""
        async with self.db.read() as session:
            expired = list(await session.scalars(select(ExportJob).where(ExportJob.expires_at < utcnow())))
        await self._forget(expired)
        await asyncio.to_thread(_delete_older, self.scratch, EXPORT_TTL)
        return len(expired)

    async def _sweep_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweeping expired exports failed; retrying")

    async def _forget(self, jobs: list[ExportJob]) -> None:
        if not jobs:
            return
        async with self.db.write() as session:
            await session.execute(delete(ExportJob).where(ExportJob.id.in_([j.id for j in jobs])))
        for job in jobs:
            await asyncio.to_thread(self._file(job).unlink, missing_ok=True)

    def _file(self, job: ExportJob) -> Path:
        return self.folder / (job.path or f"{job.user_id}/{job.id}.{job.format}")


def _attachment_path(attachment: Attachment) -> str:
    return f"attachments/{attachment.id}-{attachment.filename}"


def _dump_json(document: dict[str, Any], target: BinaryIO) -> None:
    """The document as indented UTF-8 JSON, written piece by piece."""
    text = io.TextIOWrapper(target, encoding="utf-8", newline="")
    json.dump(document, text, ensure_ascii=False, indent=2)
    text.flush()
    text.detach()  # the caller closes `target`


def _move(built: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(built, target)


def _delete_older(folder: Path, age: timedelta) -> None:
    cutoff = time.time() - age.total_seconds()
    for path in folder.glob("*") if folder.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


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


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _slug(title: str) -> str:
    """A file name from the title: letters of any script, digits, dashes."""
    return re.sub(r"[^\w]+", "-", title, flags=re.UNICODE).strip("-_")[:80]
