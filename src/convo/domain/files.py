"""Uploads: check a file by its content, keep the original, extract its text (`extraction`), and index it
in the background (`queued → processing → ready | failed`, with a readable error)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from convo.db.models import Attachment, User, utcnow
from convo.db.session import Database
from convo.domain.extraction import ExtractionError, Limits, decode_text, extract_file
from convo.domain.retrieval import Hit, Mode, Retrieval
from convo.domain.threads import owned_thread
from convo.errors import ConvoError, InvalidInput, NotFound
from convo.runtime.jobs import JobRunner

log = logging.getLogger(__name__)

INGEST_JOB = "ingest_attachment"
MAX_INGEST_ATTEMPTS = 3  # indexing started this often without finishing may be what stops the server

SOURCE_SUFFIXES = {
    ".py": "text/x-python", ".js": "text/javascript", ".mjs": "text/javascript", ".ts": "text/x-typescript",
    ".tsx": "text/x-typescript", ".jsx": "text/javascript", ".java": "text/x-java", ".c": "text/x-c",
    ".h": "text/x-c", ".cc": "text/x-c++", ".cpp": "text/x-c++", ".hpp": "text/x-c++", ".cs": "text/x-csharp",
    ".go": "text/x-go", ".rs": "text/x-rust", ".rb": "text/x-ruby", ".php": "text/x-php", ".swift": "text/x-swift",
    ".kt": "text/x-kotlin", ".scala": "text/x-scala", ".sh": "text/x-shellscript", ".sql": "text/x-sql",
    ".css": "text/css", ".scss": "text/x-scss", ".yaml": "text/yaml", ".yml": "text/yaml", ".toml": "text/x-toml",
    ".xml": "text/xml", ".r": "text/x-r", ".lua": "text/x-lua", ".pl": "text/x-perl", ".ini": "text/plain",
    ".cfg": "text/plain", ".log": "text/plain",
}
# Signatures of common binary formats, to name them in the refusal.
_BINARY = [
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF media file"), (b"\x7fELF", "an executable"), (b"MZ", "a Windows executable"),
    (b"\x1f\x8b", "a gzip archive"), (b"7z\xbc\xaf", "a 7-Zip archive"), (b"Rar!", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (save it as .docx)"), (b"ID3", "an MP3 file"),
    (b"OggS", "an Ogg media file"), (b"%!PS", "a PostScript file"), (b"SQLite format 3", "a SQLite database"),
]


_STOPPED = (f"Indexing stopped {MAX_INGEST_ATTEMPTS} times before it finished (the server stopped while reading "
            "this file), so Convo gave up on it.")


class UnsupportedType(ConvoError):
    status = 415
    code = "unsupported_media_type"


class TooLarge(ConvoError):
    status = 413
    code = "file_too_large"


class StorageQuotaExceeded(ConvoError):
    status = 413
    code = "storage_quota_exceeded"


def _size(size: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size / 1024:,.1f} KB"


def _over_quota(used: int, quota: int) -> StorageQuotaExceeded:
    return StorageQuotaExceeded(
        f"Your files use {_size(used)} of your {_size(quota)} of storage, and this file does not fit in the rest. "
        "Delete files or chats you no longer need to make room.", used_bytes=used, limit_bytes=quota)


# -- type by content -----------------------------------------------------------------------------


def detect(data: bytes, filename: str) -> str:
    """The content type of an upload, decided by its bytes (the name only picks among text kinds)."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if "word/document.xml" in archive.namelist():
                    return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        except zipfile.BadZipFile:
            pass
        raise UnsupportedType("This is a zip archive, not a Word document; upload the files inside it.")
    for signature, what in _BINARY:
        if data.startswith(signature):
            raise UnsupportedType(f"This file is {what}; Convo reads text, Markdown, PDF, Word, HTML, CSV, "
                                  "JSON and source code.")
    decoded = decode_text(data)
    if decoded is None:
        raise UnsupportedType("This file is neither text (UTF-8) nor a PDF or Word document.")
    suffix = Path(filename).suffix.lower()
    head = decoded.lstrip()[:512].lower()
    if suffix == ".json" or (head[:1] in ("{", "[") and suffix in ("", ".txt")):
        try:
            json.loads(decoded)
            return "application/json"
        except ValueError:
            if suffix == ".json":
                raise InvalidInput("This .json file is not valid JSON.", code="invalid_json") from None
        except RecursionError:
            if suffix == ".json":
                raise InvalidInput("This .json file is nested too deeply to read.", code="invalid_json") from None
    if suffix in (".html", ".htm") or head.startswith(("<!doctype html", "<html")):
        return "text/html"
    if suffix == ".csv":
        return "text/csv"
    if suffix in (".md", ".markdown"):
        return "text/markdown"
    return SOURCE_SUFFIXES.get(suffix, "text/plain")


# -- the domain ----------------------------------------------------------------------------------


def _safe_filename(name: str) -> str:
    name = os.path.basename(name.replace("\\", "/")).strip().replace("\x00", "")
    return (name or "upload")[:255]


@dataclass
class Content:
    path: Path
    filename: str
    content_type: str


class Files:
    def __init__(self, db: Database, retrieval: Retrieval, jobs: JobRunner, data_dir: Path, max_bytes: int,
                 limits: Limits, quota_bytes: int = 0) -> None:
        self.db = db
        self.retrieval = retrieval
        self.jobs = jobs
        self.root = (data_dir / "uploads").resolve()
        self.max_bytes = max_bytes
        self.limits = limits
        self.quota_bytes = quota_bytes  # per user, over all their originals; 0: unlimited
        jobs.register(INGEST_JOB, self._ingest, on_error=self._ingest_failed)

    def _user_dir(self, user_id: int) -> Path:
        return self.root / str(user_id)

    async def _used(self, session: AsyncSession, user_id: int) -> int:
        return int(await session.scalar(
            select(func.coalesce(func.sum(Attachment.size), 0)).where(Attachment.user_id == user_id)))

    async def admit(self, user: User, thread_id: int) -> int:
        """Check, before a byte of the file is read, that the thread is the user's and that their storage
        is not full; returns the bytes their files use (0 when there is no quota to count against)."""
        async with self.db.read() as session:
            await owned_thread(session, user, thread_id)
            if not self.quota_bytes:
                return 0
            used = await self._used(session, user.id)
        if used >= self.quota_bytes:
            raise _over_quota(used, self.quota_bytes)
        return used

    async def upload(self, user: User, thread_id: int, filename: str, body: AsyncIterator[bytes]) -> Attachment:
        """Keep the original, check its size and type by content, and queue its ingestion."""
        used = await self.admit(user, thread_id)
        folder = self._user_dir(user.id)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        partial = folder / f".upload-{uuid.uuid4().hex}"
        digest, size = hashlib.sha256(), 0
        try:
            with partial.open("wb") as out:
                async for piece in body:
                    size += len(piece)
                    if size > self.max_bytes:
                        raise TooLarge(f"The file is larger than the {self.max_bytes // (1024 * 1024)} MB limit.",
                                       limit_bytes=self.max_bytes)
                    if self.quota_bytes and used + size > self.quota_bytes:
                        raise _over_quota(used, self.quota_bytes)
                    digest.update(piece)
                    await asyncio.to_thread(out.write, piece)
            if size == 0:
                raise InvalidInput("The file is empty.", code="empty_file")
            data = await asyncio.to_thread(partial.read_bytes)
            content_type = await asyncio.to_thread(detect, data, filename)
            now = utcnow()
            async with self.db.write() as session:
                await owned_thread(session, user, thread_id)
                if self.quota_bytes:
                    # Counted again under a lock on the user (SQLite: the one writer), so that uploads
                    # running side by side cannot together pass the quota.
                    if not self.db.is_sqlite:
                        await session.execute(select(User.id).where(User.id == user.id).with_for_update())
                    used = await self._used(session, user.id)
                    if used + size > self.quota_bytes:
                        raise _over_quota(used, self.quota_bytes)
                attachment = Attachment(
                    user_id=user.id, thread_id=thread_id, filename=_safe_filename(filename),
                    content_type=content_type, size=size, sha256=digest.hexdigest(), storage_path="",
                    status="queued", chunk_count=0, created_at=now, updated_at=now,
                )
                session.add(attachment)
                await session.flush()
                attachment.storage_path = f"{user.id}/{attachment.id}"
            await asyncio.to_thread(partial.replace, self.root / attachment.storage_path)
        finally:
            partial.unlink(missing_ok=True)
        await self.jobs.enqueue(INGEST_JOB, {"attachment_id": attachment.id})
        return attachment

    async def _set(self, attachment_id: int, **values: Any) -> None:
        async with self.db.write() as session:
            await session.execute(update(Attachment).where(Attachment.id == attachment_id)
                                  .values(updated_at=utcnow(), **values))

    async def _ingest(self, args: dict[str, Any]) -> None:
        attachment_id = int(args["attachment_id"])
        async with self.db.read() as session:
            attachment = await session.get(Attachment, attachment_id)
        if attachment is None or attachment.status == "ready":  # deleted while queued; or delivered twice
            return
        if attachment.status == "processing" and attachment.attempts >= MAX_INGEST_ATTEMPTS:
            # Delivered again after the worker reading it died, as often as we allow.
            await self._set(attachment_id, status="failed", error=_STOPPED)
            return
        await self._set(attachment_id, status="processing", error=None, attempts=Attachment.attempts + 1)
        try:
            body = await extract_file(self.root / attachment.storage_path, attachment.content_type, self.limits)
            chunks, vectors = await asyncio.to_thread(self.retrieval.prepare, body)
        except ExtractionError as exc:
            await self._set(attachment_id, status="failed", error=str(exc))
            return
        async with self.db.write() as session:
            # Locked (SQLite: the one writer), so of two deliveries running at once only one stores chunks.
            current = await session.get(Attachment, attachment_id, with_for_update=not self.db.is_sqlite)
            if current is None or current.status == "ready":
                return
            count = await self.retrieval.store(session, current, chunks, vectors)
            current.text = body
            current.chunk_count = count
            current.status = "ready"
            current.updated_at = utcnow()

    async def _ingest_failed(self, args: dict[str, Any], exc: BaseException) -> None:
        await self._set(int(args["attachment_id"]), status="failed",
                        error=f"Indexing failed ({type(exc).__name__}); try uploading the file again.")

    async def resume(self, *, queued_before: datetime | None = None, started_before: datetime | None = None) -> None:
        """Queue again what a stopped process left queued or half done, but fail a file whose indexing
        was started MAX_INGEST_ATTEMPTS times: it may be what stopped the process. With workers of their
        own (scale mode), only rows that have waited longer than a job may take are looked at."""
        queued = Attachment.status == "queued"
        started = Attachment.status == "processing"
        if queued_before is not None:
            queued = queued & (Attachment.updated_at < queued_before)
        if started_before is not None:
            started = started & (Attachment.updated_at < started_before)
        async with self.db.write() as session:
            await session.execute(
                update(Attachment).where(started, Attachment.attempts >= MAX_INGEST_ATTEMPTS)
                .values(status="failed", updated_at=utcnow(), error=_STOPPED)
            )
            ids = list(await session.scalars(select(Attachment.id).where(queued | started)))
            if ids:
                await session.execute(update(Attachment).where(Attachment.id.in_(ids)).values(status="queued"))
        for attachment_id in ids:
            await self.jobs.enqueue(INGEST_JOB, {"attachment_id": attachment_id})

    async def list(self, user: User, thread_id: int) -> list[Attachment]:
        async with self.db.read() as session:
            await owned_thread(session, user, thread_id)
            return list(await session.scalars(
                select(Attachment).where(Attachment.thread_id == thread_id, Attachment.user_id == user.id)
                .order_by(Attachment.id)
            ))

    async def get(self, user: User, attachment_id: int) -> Attachment:
        async with self.db.read() as session:
            attachment = await session.get(Attachment, attachment_id)
        if attachment is None or attachment.user_id != user.id:
            raise NotFound("No such attachment.")
        return attachment

    async def content(self, user: User, attachment_id: int) -> Content:
        attachment = await self.get(user, attachment_id)
        path = self.root / attachment.storage_path
        if not path.is_file():
            raise NotFound("The original of this attachment is gone.")
        return Content(path, attachment.filename, attachment.content_type)

    async def delete(self, user: User, attachment_id: int) -> None:
        """Remove the attachment with its chunks and vectors (cascades) and its original."""
        async with self.db.write() as session:
            attachment = await session.get(Attachment, attachment_id)
            if attachment is None or attachment.user_id != user.id:
                raise NotFound("No such attachment.")
            await session.delete(attachment)
        await asyncio.to_thread((self.root / attachment.storage_path).unlink, missing_ok=True)

    async def sweep(self, user_id: int | None = None) -> int:
        """Delete originals whose attachment is gone (its thread was deleted); returns how many. The folder
        is listed before the rows are read: an upload commits its row before its file takes its name, so
        the row of every file listed is there to be read, and a file that lands later is not looked at."""

        def listed() -> list[Path]:
            folders = [self._user_dir(user_id)] if user_id is not None else (
                [p for p in self.root.iterdir() if p.is_dir()] if self.root.is_dir() else [])
            return [path for folder in folders if folder.is_dir() for path in folder.iterdir()
                    if not path.name.startswith(".upload-")]

        paths = await asyncio.to_thread(listed)
        if not paths:
            return 0
        query = select(Attachment.storage_path)
        if user_id is not None:
            query = query.where(Attachment.user_id == user_id)
        async with self.db.read() as session:
            kept = set(await session.scalars(query))
        orphans = [path for path in paths if f"{path.parent.name}/{path.name}" not in kept]

        def remove() -> None:
            for path in orphans:
                path.unlink(missing_ok=True)

        await asyncio.to_thread(remove)
        return len(orphans)

    async def search(
        self, user: User, q: str, *, thread_id: int | None = None, attachment_ids: list[int] | None = None,
        k: int = 8, mode: Mode = "hybrid",
    ) -> list[Hit]:
        """The user's best chunks for `q`: in one thread's files, in named files, or in all of them."""
        if not q.strip():
            raise InvalidInput("The query is empty.", code="empty_query")
        scope = await self.scope(user, thread_id=thread_id, attachment_ids=attachment_ids)
        return await self.retrieval.search(user.id, q, k=k, mode=mode, attachment_ids=scope)

    async def scope(
        self, user: User, *, thread_id: int | None = None, attachment_ids: list[int] | None = None
    ) -> list[int] | None:
        """Attachment ids to search (None: all the user's). Foreign or missing ones are a 404."""
        if thread_id is None and attachment_ids is None:
            return None
        async with self.db.read() as session:
            if thread_id is not None:
                await owned_thread(session, user, thread_id)
            query = select(Attachment.id, Attachment.thread_id).where(Attachment.user_id == user.id)
            if attachment_ids is not None:
                query = query.where(Attachment.id.in_(attachment_ids))
            else:
                query = query.where(Attachment.thread_id == thread_id)
            rows = (await session.execute(query)).all()
        if attachment_ids is not None and len({r[0] for r in rows}) != len(set(attachment_ids)):
            raise NotFound("No such attachment.")
        return [r[0] for r in rows if thread_id is None or r[1] == thread_id]
