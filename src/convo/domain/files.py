"""Uploads: check a file by its content, keep the original, extract its text, and index it in the
background (`queued → processing → ready | failed`, with a readable error)."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import os
import re
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from convo.db.models import Attachment, User, utcnow
from convo.db.session import Database
from convo.domain.retrieval import Hit, Mode, Retrieval
from convo.domain.threads import owned_thread
from convo.errors import ConvoError, InvalidInput, NotFound
from convo.runtime.jobs import JobRunner

log = logging.getLogger(__name__)

INGEST_JOB = "ingest_attachment"
MAX_TEXT_CHARS = 5_000_000  # about 1,000 pages; more is refused rather than indexed half

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


class UnsupportedType(ConvoError):
    status = 415
    code = "unsupported_media_type"


class TooLarge(ConvoError):
    status = 413
    code = "file_too_large"


class ExtractionError(Exception):
    """A file whose type is fine but whose text cannot be had; the message is shown to the user."""


# -- type by content -----------------------------------------------------------------------------


def _decode_text(data: bytes) -> str | None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            return None
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


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
    decoded = _decode_text(data)
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
    if suffix in (".html", ".htm") or head.startswith(("<!doctype html", "<html")):
        return "text/html"
    if suffix == ".csv":
        return "text/csv"
    if suffix in (".md", ".markdown"):
        return "text/markdown"
    return SOURCE_SUFFIXES.get(suffix, "text/plain")


# -- text extraction -----------------------------------------------------------------------------


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError("This PDF is password-protected.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except PdfReadError as exc:
        raise ExtractionError(f"This PDF could not be read: {exc}") from exc
    body = "\n\n".join(p.strip() for p in pages if p.strip())
    if not body:
        raise ExtractionError("This PDF has no text layer (a scan?); Convo does not run OCR.")
    return body


def _docx_text(data: bytes) -> str:
    import docx

    document = docx.Document(io.BytesIO(data))
    parts: list[str] = []
    for block in document.element.body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = docx.text.paragraph.Paragraph(block, document)
            line = paragraph.text.strip()
            if not line:
                continue
            style = (paragraph.style.name if paragraph.style is not None else "") or ""
            level = re.match(r"Heading (\d)", style)
            if level:
                line = "#" * int(level.group(1)) + " " + line
            elif style == "Title":
                line = "# " + line
            parts.append(line)
        elif tag == "tbl":
            table = docx.table.Table(block, document)
            rows = [" | ".join(cell.text.strip() for cell in row.cells) for row in table.rows]
            parts.append("\n".join(rows))
    return "\n\n".join(parts)


def _html_text(data: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "svg", "head"]):
        tag.decompose()
    for n in range(1, 7):
        for heading in soup.find_all(f"h{n}"):
            heading.replace_with(f"\n\n{'#' * n} {heading.get_text(' ', strip=True)}\n\n")
    for block in soup.find_all(["p", "div", "li", "tr", "pre", "blockquote", "section", "article", "br", "table"]):
        block.insert_before("\n\n")
        block.insert_after("\n\n")
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in soup.get_text().split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _csv_text(data: str) -> str:
    """One paragraph per row, each value under its column's name, so a row is retrieved whole."""
    try:
        dialect = csv.Sniffer().sniff(data[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(data), dialect))
    if not rows:
        return ""
    header, body = rows[0], rows[1:]
    if not body:
        return ", ".join(header)
    return "\n\n".join(
        "; ".join(f"{(header[i] if i < len(header) else f'column {i + 1}').strip()}: {v.strip()}"
                  for i, v in enumerate(row) if v.strip())
        for row in body
    )


def _json_text(data: str) -> str:
    """`path: value` lines, one paragraph per top-level entry."""
    value = json.loads(data)

    def walk(node: Any, path: str, out: list[str]) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else str(key), out)
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{path}[{i}]", out)
        else:
            out.append(f"{path}: {node}" if path else str(node))

    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else [("", value)]
    paragraphs = []
    for key, child in items:
        lines: list[str] = []
        walk(child, f"[{key}]" if isinstance(key, int) else str(key), lines)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(p for p in paragraphs if p)


def extract(data: bytes, content_type: str) -> str:
    """The text of a file of a detected type. Blocking: run in a thread."""
    if content_type == "application/pdf":
        body = _pdf_text(data)
    elif content_type.endswith("wordprocessingml.document"):
        body = _docx_text(data)
    else:
        decoded = _decode_text(data) or ""
        if content_type == "text/html":
            body = _html_text(decoded)
        elif content_type == "text/csv":
            body = _csv_text(decoded)
        elif content_type == "application/json":
            body = _json_text(decoded)
        else:
            body = decoded
    body = body.replace("\x00", "")
    if not body.strip():
        raise ExtractionError("This file has no text.")
    if len(body) > MAX_TEXT_CHARS:
        raise ExtractionError(f"This file has more than {MAX_TEXT_CHARS:,} characters of text; split it up.")
    return body


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
    def __init__(self, db: Database, retrieval: Retrieval, jobs: JobRunner, data_dir: Path, max_bytes: int) -> None:
        self.db = db
        self.retrieval = retrieval
        self.jobs = jobs
        self.root = (data_dir / "uploads").resolve()
        self.max_bytes = max_bytes
        jobs.register(INGEST_JOB, self._ingest, on_error=self._ingest_failed)

    def _user_dir(self, user_id: int) -> Path:
        return self.root / str(user_id)

    async def upload(self, user: User, thread_id: int, filename: str, body: AsyncIterator[bytes]) -> Attachment:
        """Keep the original, check its size and type by content, and queue its ingestion."""
        async with self.db.read() as session:
            await owned_thread(session, user, thread_id)
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
                    digest.update(piece)
                    await asyncio.to_thread(out.write, piece)
            if size == 0:
                raise InvalidInput("The file is empty.", code="empty_file")
            data = await asyncio.to_thread(partial.read_bytes)
            content_type = await asyncio.to_thread(detect, data, filename)
            now = utcnow()
            async with self.db.write() as session:
                await owned_thread(session, user, thread_id)
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
        if attachment is None:  # deleted while queued
            return
        await self._set(attachment_id, status="processing", error=None)
        try:
            data = await asyncio.to_thread((self.root / attachment.storage_path).read_bytes)
            body = await asyncio.to_thread(extract, data, attachment.content_type)
            chunks, vectors = await asyncio.to_thread(self.retrieval.prepare, body)
        except ExtractionError as exc:
            await self._set(attachment_id, status="failed", error=str(exc))
            return
        async with self.db.write() as session:
            current = await session.get(Attachment, attachment_id)
            if current is None:
                return
            count = await self.retrieval.store(session, current, chunks, vectors)
            current.text = body
            current.chunk_count = count
            current.status = "ready"
            current.updated_at = utcnow()

    async def _ingest_failed(self, args: dict[str, Any], exc: BaseException) -> None:
        await self._set(int(args["attachment_id"]), status="failed",
                        error=f"Indexing failed ({type(exc).__name__}); try uploading the file again.")

    async def resume(self) -> None:
        """Queue again what a stopped process left queued or half done."""
        async with self.db.write() as session:
            ids = list(await session.scalars(select(Attachment.id).where(
                Attachment.status.in_(("queued", "processing")))))
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
        """Delete originals whose attachment is gone (its thread was deleted); returns how many."""
        query = select(Attachment.storage_path)
        if user_id is not None:
            query = query.where(Attachment.user_id == user_id)
        async with self.db.read() as session:
            kept = set(await session.scalars(query))

        def remove() -> int:
            folders = [self._user_dir(user_id)] if user_id is not None else (
                [p for p in self.root.iterdir() if p.is_dir()] if self.root.is_dir() else [])
            removed = 0
            for folder in folders:
                if not folder.is_dir():
                    continue
                for path in folder.iterdir():
                    if path.name.startswith(".upload-"):
                        continue
                    if f"{folder.name}/{path.name}" not in kept:
                        path.unlink(missing_ok=True)
                        removed += 1
            return removed

        return await asyncio.to_thread(remove)

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
