"""Chats brought in from a file: Convo's own exports (one chat's JSON or zip, or the zip of every chat) or
ChatGPT's `conversations.json`. Every version is kept: both formats are trees, and so is a Convo thread.

An import file is untrusted input, so:
- it is read in a separate process with a memory cap: json.loads, inflating and validation hold the GIL
  for long stretches, and the event loop must keep answering everyone else meanwhile;
- a zip is checked from its directory (member count, sum of declared sizes, nested archives) before
  anything is inflated, and then only the members the export references are read, one at a time, against
  a running byte budget;
- every field is validated as the API validates its own input: texts and labels capped, temperatures in
  range or dropped, `meta` reduced to the keys Convo writes, times clamped to the past. An import never
  writes spending (`Message.cost_usd`): budgets count what this server answered, not what a file says.
Nothing is written before the whole file is read and checked. Each chat is then written in bounded
transactions, so SQLite's single writer is never held for a whole giant chat; a chat that fails half way
is removed. Search indexes the messages through its triggers; files go through the usual upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import itertools
import json
import logging
import lzma
import math
import multiprocessing
import os
import pickle
import resource
import shutil
import signal
import struct
import tempfile
import zipfile
import zlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from sqlalchemy import bindparam, delete, insert, update

from convo.db.models import Message, Thread, User, utcnow
from convo.db.session import Database
from convo.domain.exports import FORMAT_VERSION
from convo.domain.files import Files
from convo.errors import ConvoError, InvalidInput
from convo.llm.registry import Registry

log = logging.getLogger(__name__)

ROLES = ("user", "assistant", "system")
FINISHED = ("complete", "cancelled", "error", "interrupted")

# What one import may hold. A chat longer than this is not a conversation anyone reads back.
MAX_CHATS = 10_000
MAX_MESSAGES = 200_000
MAX_CHAT_MESSAGES = 100_000
# The API's own limits (api/messages.py, api/threads.py, db/models.py).
MAX_CONTENT = 200_000
MAX_SYSTEM_PROMPT = 20_000
MAX_TITLE = 300
MAX_LABEL = 200
MAX_FILENAME = 255
# A zip: an "every chat" export holds a JSON and a Markdown file per chat, plus the chats' files.
MAX_MEMBERS = 3 * MAX_CHATS
# Inflated bytes per byte of the import limit, summed over every member: text compresses about 4-10x,
# so real exports fit, while a bomb (1000x) is refused from its directory alone.
INFLATE_FACTOR = 4
# A central directory entry is 46 bytes plus its name; this bounds the directory zipfile would parse.
_MAX_DIRECTORY_BYTES = MAX_MEMBERS * 512
_NESTED = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar")
_READ_CHUNK = 1024 * 1024
# Messages per write transaction: short enough that other users' writes wait milliseconds, not seconds.
WRITE_BATCH = 500
# The parsing process's address space; the biggest legal import needs well under half of this.
_PARSER_MEMORY = 3 * 1024**3
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Turn:
    key: str
    parent: str | None
    role: str
    content: str
    created_at: datetime
    status: str = "complete"
    model: str | None = None
    temperature: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chat:
    title: str
    turns: list[Turn]  # parents before children
    leaf: str | None
    created_at: datetime
    model: str | None = None
    temperature: float | None = None
    system_prompt: str | None = None
    # (filename, the file inflated into the scratch folder, its id in the export: citations name it)
    files: list[tuple[str, Path, int | None]] = field(default_factory=list)
    # The turns pickled in write batches: cheap to hand from the parsing process, unpickled one at a time.
    batches: list[bytes] = field(default_factory=list)

    def packed(self) -> Chat:
        batches = [pickle.dumps(self.turns[i:i + WRITE_BATCH]) for i in range(0, len(self.turns), WRITE_BATCH)]
        return replace(self, turns=[], batches=batches)


class Imports:
    def __init__(self, db: Database, files: Files, registry: Registry) -> None:
        self.db = db
        self.files = files
        self.registry = registry
        self._parser: ProcessPoolExecutor | None = None

    async def run(self, user: User, data: bytes) -> list[Thread]:
        scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="convo-import-"))
        try:
            chats = await self._parse(data, scratch)
            threads = []
            for chat in chats:
                if chat.model is not None:
                    try:  # a model this server does not offer: the chat uses the default
                        chat.model = (await self.registry.resolve(chat.model)).model.id
                    except ConvoError:
                        chat.model = None
                threads.append(await self._write(user, chat))
            return threads
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    def close(self) -> None:
        if self._parser is not None:
            self._parser.shutdown(wait=False, cancel_futures=True)
            self._parser = None

    async def _parse(self, data: bytes, scratch: Path) -> list[Chat]:
        if self._parser is None:
            # Spawned, not forked: this process has threads and a running loop.
            self._parser = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                               initializer=_cap_memory)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._parser, parse_packed, data, self.files.max_bytes, scratch)
        except (MemoryError, BrokenProcessPool) as exc:
            if isinstance(exc, BrokenProcessPool):
                self._parser = None
            raise InvalidInput("This file needs more memory to read than an import may use.",
                               code="import_too_large") from exc

    async def _write(self, user: User, chat: Chat) -> Thread:
        now = utcnow()
        async with self.db.write() as session:
            thread = Thread(user_id=user.id, title=chat.title, model=chat.model, temperature=chat.temperature,
                            system_prompt=chat.system_prompt, created_at=chat.created_at, updated_at=now)
            session.add(thread)
        try:
            # Files first: citations in the messages then name the restored files.
            restored: dict[int, int] = {}
            for name, path, old_id in chat.files:
                try:
                    attachment = await self.files.upload(user, thread.id, name, _pieces(path))
                except ConvoError as exc:  # the chat is in; a file this server refuses is left out
                    log.warning("import: file %r of thread %d not restored: %s", name, thread.id, exc.message)
                    continue
                if old_id is not None:
                    restored[old_id] = attachment.id
            ids: dict[str, int] = {}
            last: int | None = None
            for batch in chat.batches:
                turns: list[Turn] = pickle.loads(batch)
                async with self.db.write() as session:
                    last = await _insert(session, user.id, thread.id, turns, ids, restored)
            leaf = ids.get(chat.leaf or "") or last
            async with self.db.write() as session:
                await session.execute(update(Thread).where(Thread.id == thread.id).values(current_leaf_id=leaf))
            thread.current_leaf_id = leaf
        except BaseException:
            # Half a chat is worse than none; its restored files' originals go with the next sweep.
            async with self.db.write() as session:
                await session.execute(delete(Message).where(Message.thread_id == thread.id))
                await session.execute(delete(Thread).where(Thread.id == thread.id))
            raise
        return thread


async def _insert(session: Any, user_id: int, thread_id: int, turns: list[Turn], ids: dict[str, int],
                  restored: dict[int, int]) -> int:
    """Insert one batch of turns; `ids` maps the file's keys to the rows written so far. A parent (or an
    `edited_from`) inside the same batch has no id yet: such rows get it in one update right after."""
    rows, later = [], []
    for turn in turns:
        meta, pending = _final_meta(turn.meta, ids, restored)
        parent = ids.get(turn.parent) if turn.parent is not None else None
        if pending or (turn.parent is not None and parent is None):
            later.append(turn)
        rows.append({"thread_id": thread_id, "user_id": user_id, "parent_id": parent, "role": turn.role,
                     "content": turn.content, "status": turn.status, "model": turn.model,
                     "temperature": turn.temperature, "meta": meta, "event_seq": 0,
                     "created_at": turn.created_at, "updated_at": turn.created_at})
    written = await session.scalars(insert(Message).returning(Message.id, sort_by_parameter_order=True), rows)
    new_ids = list(written)
    ids.update(zip((t.key for t in turns), new_ids, strict=True))
    if later:
        table = Message.__table__
        await session.execute(
            update(table).where(table.c.id == bindparam("row_id"))
            .values(parent_id=bindparam("new_parent"), meta=bindparam("new_meta")),
            [{"row_id": ids[t.key], "new_parent": ids.get(t.parent) if t.parent is not None else None,
              "new_meta": _final_meta(t.meta, ids, restored)[0]} for t in later],
        )
    return new_ids[-1]


def _final_meta(meta: dict[str, Any], ids: dict[str, int], restored: dict[int, int]) -> tuple[dict[str, Any], bool]:
    """The stored meta: ids of the file replaced by this server's (dropped when they do not exist here).
    True when a message it names is not written yet."""
    if "edited_from" not in meta and "citations" not in meta:
        return meta, False
    final, pending = dict(meta), False
    if "edited_from" in meta:
        new = ids.get(meta["edited_from"])
        pending = new is None
        if new is None:
            del final["edited_from"]
        else:
            final["edited_from"] = new
    if "citations" in meta:
        final["citations"] = [
            {**c, "attachment_id": restored.get(c["attachment_id"]) if c.get("attachment_id") is not None else None}
            for c in meta["citations"]
        ]
    return final, pending


async def _pieces(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while piece := await asyncio.to_thread(handle.read, _READ_CHUNK):
            yield piece


_PR_SET_PDEATHSIG = 1  # prctl(2)


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_PARSER_MEMORY, _PARSER_MEMORY))
    # Die with the server, even a killed one: an orphaned parser would hold its memory forever.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the server died before the line above ran
        os._exit(0)


# -- reading a file (in the parsing process) -------------------------------------------------------


def parse_packed(data: bytes, max_file_bytes: int, scratch: Path) -> list[Chat]:
    return [chat.packed() for chat in parse(data, max_file_bytes, scratch)]


def parse(data: bytes, max_file_bytes: int, scratch: Path) -> list[Chat]:
    """Every chat in the file, or a 422 that says what the file is not. Files of a zip are inflated into
    `scratch`."""
    if zipfile.is_zipfile(io.BytesIO(data)):
        return _from_zip(data, max_file_bytes, scratch)
    document = _load(data)
    if _is_convo(document):
        return _count([_convo(document, None)])
    if isinstance(document, list) and all(isinstance(c, dict) and "mapping" in c for c in document):
        if len(document) > MAX_CHATS:
            raise InvalidInput(f"At most {MAX_CHATS:,} chats can be imported at once.", code="too_many_chats")
        return _count([_malformed_is_422(_chatgpt, c) for c in document])
    raise _not_an_export()


class _Budget:
    """Bytes still allowed to be inflated; counted on what is actually read, not on what a header says."""

    def __init__(self, left: int) -> None:
        self.left = left

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise _too_big()


def _from_zip(data: bytes, max_file_bytes: int, scratch: Path) -> list[Chat]:
    inflated_limit = INFLATE_FACTOR * max_file_bytes
    if _directory_size(data) > _MAX_DIRECTORY_BYTES:
        raise _too_many_members()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            # The directory alone decides these, before a byte is inflated.
            if len(members) > MAX_MEMBERS:
                raise _too_many_members()
            if sum(m.file_size for m in members) > inflated_limit:
                raise _too_big()
            if any(m.filename.lower().endswith(_NESTED) for m in members):
                raise InvalidInput("This zip holds another archive; import the export itself.",
                                   code="nested_archive")
            documents = [m for m in members if _is_document(m.filename)]
            if not documents:
                raise _not_an_export()
            if len(documents) > MAX_CHATS:
                raise InvalidInput(f"At most {MAX_CHATS:,} chats can be imported at once.", code="too_many_chats")
            budget = _Budget(inflated_limit)
            names = itertools.count()
            by_name = {m.filename: m for m in members}
            chats = []
            for info in documents:
                body = bytearray()
                _inflate(archive, info, budget, body.extend)
                document = _load(bytes(body))
                if not _is_convo(document):
                    raise _not_an_export()
                folder = info.filename.rpartition("/")[0]

                def extract(path: str, folder: str = folder) -> Path | None:
                    member = by_name.get(f"{folder}/{path}" if folder else path)
                    if member is None or member.file_size > max_file_bytes:
                        return None  # listed but not in this zip (a JSON-only export), or too big to restore
                    target = scratch / str(next(names))  # never the member's name: no path tricks
                    with target.open("wb") as out:
                        _inflate(archive, member, budget, out.write)
                    return target

                chats.append(_convo(document, extract))
            return _count(chats)
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError) as exc:
        raise InvalidInput(f"The zip is damaged ({exc}).", code="invalid_import") from exc
    except NotImplementedError as exc:  # a compression method zipfile does not know
        raise InvalidInput(f"The zip uses a compression this server does not read ({exc}).",
                           code="invalid_import") from exc
    except RuntimeError as exc:  # zipfile's word for an encrypted member
        raise InvalidInput("The zip is encrypted; export again without a password.", code="invalid_import") from exc


def _directory_size(data: bytes) -> int:
    """The central directory's size from the end record (a zip64 record says it in eight bytes)."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 65_535))
    if at < 0 or at + 22 > len(data):
        raise _not_an_export()
    size = struct.unpack_from("<I", data, at + 12)[0]
    locator = at - 20
    if size == 0xFFFFFFFF and locator >= 0 and data[locator:locator + 4] == b"PK\x06\x07":
        record = struct.unpack_from("<Q", data, locator + 8)[0]
        if data[record:record + 4] == b"PK\x06\x06":
            size = struct.unpack_from("<Q", data, record + 40)[0]
    return int(size)


def _is_document(name: str) -> bool:
    """A chat's JSON: at the top (one chat's zip) or one folder down (the zip of every chat)."""
    parts = name.split("/")
    return name.lower().endswith(".json") and (len(parts) == 1 or (len(parts) == 2 and parts[0] != "attachments"))


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, sink: Callable[[bytes], Any]) -> None:
    with archive.open(info) as handle:
        while piece := handle.read(_READ_CHUNK):
            budget.spend(len(piece))
            sink(piece)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _load(data: bytes) -> Any:
    try:
        return _without_nul(json.loads(data, parse_constant=_refuse_constant))
    except RecursionError as exc:
        raise InvalidInput("The file is nested too deeply to be an export.", code="invalid_import") from exc
    except ValueError as exc:  # also UnicodeDecodeError and JSONDecodeError
        raise _not_an_export() from exc


def _without_nul(document: Any) -> Any:
    """The document with U+0000 dropped from its strings: PostgreSQL cannot store it in text, and it is
    never meaningful in a chat (walked without recursion, as the document may be deep)."""
    stack = [document]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in list(items):
            if isinstance(value, str):
                if "\x00" in value:
                    node[key] = value.replace("\x00", "")
            elif isinstance(value, (dict, list)):
                stack.append(value)
    return document


def _is_convo(document: Any) -> bool:
    if not (isinstance(document, dict) and document.get("format") == "convo.thread"):
        return False
    if document.get("version") != FORMAT_VERSION:
        raise InvalidInput(f"This Convo export has format version {str(document.get('version'))[:20]!r}; this "
                           f"server reads version {FORMAT_VERSION}.", code="unsupported_import")
    return True


def _count(chats: list[Chat]) -> list[Chat]:
    total = sum(len(c.turns) for c in chats)
    if total > MAX_MESSAGES:
        raise InvalidInput(f"This file holds {total:,} messages; at most {MAX_MESSAGES:,} can be imported at once.",
                           code="too_many_messages")
    return chats


def _chat_size(title: str, count: int) -> None:
    if count > MAX_CHAT_MESSAGES:
        raise InvalidInput(f"The chat {title[:80]!r} has {count:,} messages; at most {MAX_CHAT_MESSAGES:,} "
                           f"can be imported in one chat.", code="too_many_messages")


# -- fields, validated as the API validates them ---------------------------------------------------


def _when(value: Any) -> datetime:
    """A time from the file, in the past: a future date would count as recent forever."""
    now = utcnow()
    if value is None or value == "":
        return now
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return datetime.fromtimestamp(min(max(value, 0.0), now.timestamp()), UTC)
        if isinstance(value, str) and len(value) <= 64:
            moment = datetime.fromisoformat(value)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            return min(max(moment, _EPOCH), now).astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise ValueError(f"{str(value)[:40]!r} is not a time")


def _temperature(value: Any) -> float | None:
    """The API's 0-2; anything else is dropped (the chat then uses the model's default)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 2:
        return float(value)
    return None


def _label(value: Any) -> str | None:
    """A model id: a label as long as the column, or none."""
    return value if isinstance(value, str) and 0 < len(value) <= MAX_LABEL else None


def _title(value: Any) -> str:
    return value[:MAX_TITLE] if isinstance(value, str) else ""


def _content(value: Any) -> str:
    """A message's text, cut at the API's limit: an answer can legitimately be longer than a question
    may be, and one long message is no reason to refuse a whole history."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("content must be text")
    return value[:MAX_CONTENT]


def _number(value: Any, *, signed: bool = False) -> float | int | None:
    """A count, a duration or a cost (never negative), or a score (any sign); else none."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (-1e15 if signed else 0) <= value < 1e15:
        return value
    return None


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _meta(raw: Any, keys: dict[int, str]) -> dict[str, Any]:
    """The keys Convo itself writes (chat.py's usage, citations and error; versions.py's edited_from),
    with their types. Anything else in a file is dropped: it could only pose as something Convo said."""
    if not isinstance(raw, dict):
        return {}
    meta: dict[str, Any] = {}
    for key in ("prompt_tokens", "completion_tokens", "cost_usd", "ttft_ms", "latency_ms"):
        # cost_usd is the historical figure shown beside the answer; budgets never read it from here.
        # An answer without a first token has ttft_ms null: kept, as any key present and null.
        if key in raw and ((value := _number(raw[key])) is not None or raw[key] is None):
            meta[key] = value
    if (provider := _text(raw.get("provider"), MAX_LABEL)) is not None:
        meta["provider"] = provider
    error = raw.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        meta["error"] = {"code": _text(error.get("code"), 100) or "upstream_error",
                         "message": error["message"][:2_000]}
    citations = raw.get("citations")
    if isinstance(citations, list) and citations:
        meta["citations"] = [
            {"n": c.get("n") if isinstance(c.get("n"), int) else i + 1,
             "chunk_id": None,  # chunks are made anew when the file is indexed again
             "attachment_id": c.get("attachment_id") if isinstance(c.get("attachment_id"), int) else None,
             "filename": _text(c.get("filename"), MAX_FILENAME) or "",
             "score": _number(c.get("score"), signed=True), "bm25_score": _number(c.get("bm25_score"), signed=True),
             "vector_score": _number(c.get("vector_score"), signed=True),
             "snippet": _text(c.get("snippet"), 2_000) or ""}
            for i, c in enumerate(citations[:100]) if isinstance(c, dict)
        ]
    edited = raw.get("edited_from")
    if isinstance(edited, int) and edited in keys:
        meta["edited_from"] = keys[edited]  # the file's key; the writer turns it into this server's id
    return meta


When = Annotated[datetime, BeforeValidator(_when)]
Temperature = Annotated[float | None, BeforeValidator(_temperature)]
Label = Annotated[str | None, BeforeValidator(_label)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _ConvoThread(_Part):
    title: Annotated[str, BeforeValidator(_title)] = ""
    model: Label = None
    temperature: Temperature = None
    system_prompt: str | None = Field(None, max_length=MAX_SYSTEM_PROMPT)
    current_leaf_id: int | None = None
    created_at: When = Field(None, validate_default=True)


class _ConvoMessage(_Part):
    id: int
    parent_id: int | None = None
    role: str
    content: Annotated[str, BeforeValidator(_content)] = ""
    status: str | None = None
    model: Label = None
    temperature: Temperature = None
    meta: Any = None
    created_at: When = Field(None, validate_default=True)


class _ConvoAttachment(_Part):
    id: int | None = None
    filename: str = Field(min_length=1, max_length=MAX_FILENAME)
    path: str | None = Field(None, max_length=1_000)


class _ConvoDocument(_Part):
    thread: _ConvoThread
    messages: list[_ConvoMessage]
    attachments: list[_ConvoAttachment] = Field(default_factory=list, max_length=1_000)


def _convo(document: dict[str, Any], extract: Callable[[str], Path | None] | None) -> Chat:
    """One Convo export. `extract` inflates a file the export lists (a zip), or there are none (a JSON)."""
    messages = document.get("messages")
    _chat_size(_title((document.get("thread") or {}).get("title") if isinstance(document.get("thread"), dict)
                      else None), len(messages) if isinstance(messages, list) else 0)
    try:
        parsed = _ConvoDocument.model_validate(document)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    thread = parsed.thread
    turns = []
    keys: dict[int, str] = {}
    for m in sorted(parsed.messages, key=lambda m: m.id):
        if m.id in keys:
            raise InvalidInput(f"Message {m.id} appears twice in the file.", code="invalid_import")
        if m.parent_id is not None and m.parent_id not in keys:
            raise InvalidInput(f"Message {m.id} answers a message that is not in the file.", code="invalid_import")
        turns.append(Turn(str(m.id), str(m.parent_id) if m.parent_id is not None else None,
                          m.role if m.role in ROLES else "user", m.content, m.created_at,
                          m.status if m.status in FINISHED else "interrupted", m.model, m.temperature,
                          _meta(m.meta, keys)))
        keys[m.id] = str(m.id)
    files = []
    if extract is not None:
        for a in parsed.attachments:
            if a.path and (path := extract(a.path)) is not None:
                files.append((a.filename, path, a.id))
    leaf = thread.current_leaf_id
    return Chat(thread.title, turns, keys.get(leaf) if leaf is not None else None, thread.created_at,
                thread.model, thread.temperature, thread.system_prompt, files)


def _invalid(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return InvalidInput(f"The file looks like an export but {where} is malformed ({first['msg']}).",
                        code="invalid_import")


def _malformed_is_422(read: Callable[[dict[str, Any]], Chat], conversation: dict[str, Any]) -> Chat:
    try:
        return read(conversation)
    except ConvoError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"The file looks like an export but a part of it is malformed ({exc}).",
                           code="invalid_import") from exc


def _chatgpt(conversation: dict[str, Any]) -> Chat:
    """ChatGPT's tree: nodes with a parent, many without a message (the root) or with one nobody reads
    (system and tool steps). Those are skipped and their children hang from the nearest kept ancestor."""
    mapping: dict[str, Any] = conversation["mapping"]
    title = _title(conversation.get("title"))
    created = _when(conversation.get("create_time"))
    kept: dict[str, Turn] = {}
    # The nearest kept ancestor of a skipped node. Parents come first, so an ancestor's answer is final
    # when it is asked: memoised, a long run of skipped nodes is walked once, not once per descendant.
    anchors: dict[str, str | None] = {}

    def text_of(message: dict[str, Any]) -> str:
        content = message.get("content") or {}
        parts = content.get("parts") or ([content["text"]] if isinstance(content.get("text"), str) else [])
        return "\n\n".join(p for p in parts if isinstance(p, str)).strip()

    def anchor(node_id: str | None) -> str | None:
        path: list[str] = []
        on_path: set[str] = set()
        while (node_id is not None and node_id not in kept and node_id not in anchors and node_id in mapping
               and node_id not in on_path):
            path.append(node_id)
            on_path.add(node_id)
            node_id = mapping[node_id].get("parent")
        found = node_id if node_id in kept else anchors.get(node_id) if node_id is not None else None
        for skipped in path:
            anchors[skipped] = found
        return found

    order = _parents_first(mapping)
    for node_id in order:
        message = mapping[node_id].get("message")
        if not message:
            continue
        role = (message.get("author") or {}).get("role")
        text = text_of(message)
        if role not in ("user", "assistant") or not text:
            continue
        model = _label((message.get("metadata") or {}).get("model_slug"))
        created_at = _when(message.get("create_time")) if message.get("create_time") is not None else created
        kept[node_id] = Turn(node_id, anchor(mapping[node_id].get("parent")), role, _content(text), created_at,
                             model=model)
        _chat_size(title, len(kept))
    leaf = anchor(conversation.get("current_node"))
    return Chat(title, list(kept.values()), leaf, created)


def _parents_first(mapping: dict[str, Any]) -> list[str]:
    """Every node after its parent, in one pass: each node is placed once (a set, not list lookups)."""
    order: list[str] = []
    placed: set[str] = set()
    for start in mapping:
        chain: list[str] = []
        on_chain: set[str] = set()
        node: str | None = start
        while node is not None and node not in placed and node in mapping and node not in on_chain:
            chain.append(node)
            on_chain.add(node)
            node = mapping[node].get("parent")
        for item in reversed(chain):
            placed.add(item)
            order.append(item)
    return order


def _not_an_export() -> InvalidInput:
    return InvalidInput("This is neither a Convo export (JSON or zip) nor ChatGPT's conversations.json.",
                        code="not_an_export")


def _too_big() -> InvalidInput:
    return InvalidInput(f"The zip inflates to more than {INFLATE_FACTOR} times the import limit.",
                        code="import_too_large")


def _too_many_members() -> InvalidInput:
    return InvalidInput(f"The zip holds more than {MAX_MEMBERS:,} files.", code="import_too_large")
