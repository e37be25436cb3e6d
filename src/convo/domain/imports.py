"""Chats brought in from a file: Convo's own export (JSON, or the zip with its files) or ChatGPT's
`conversations.json`. Every version is kept: both formats are trees, and so is a Convo thread.

A file is read whole and checked before anything is written; each chat is then written in one
transaction, so a bad file adds nothing and a good one adds every chat it holds. Search indexes the
imported messages through its triggers; attached files go through the usual upload and indexing.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from convo.db.models import Message, Thread, User, utcnow
from convo.db.session import Database
from convo.domain.exports import FORMAT_VERSION
from convo.domain.files import Files
from convo.errors import ConvoError, InvalidInput
from convo.llm.registry import Registry

log = logging.getLogger(__name__)

ROLES = ("user", "assistant", "system")
FINISHED = ("complete", "cancelled", "error", "interrupted")
MAX_CHATS = 10_000


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
    files: list[tuple[str, bytes]] = field(default_factory=list)


class Imports:
    def __init__(self, db: Database, files: Files, registry: Registry) -> None:
        self.db = db
        self.files = files
        self.registry = registry

    async def run(self, user: User, data: bytes) -> list[Thread]:
        chats = parse(data, self.files.max_bytes)
        threads = []
        for chat in chats:
            if chat.model is not None:
                try:  # a model this server does not offer: the chat uses the default
                    chat.model = (await self.registry.resolve(chat.model)).model.id
                except ConvoError:
                    chat.model = None
            thread = await self._write(user, chat)
            for name, body in chat.files:
                try:
                    await self.files.upload(user, thread.id, name, _once(body))
                except ConvoError as exc:  # the chat is in; a file this server refuses is left out
                    log.warning("import: file %r of thread %d not restored: %s", name, thread.id, exc.message)
            threads.append(thread)
        return threads

    async def _write(self, user: User, chat: Chat) -> Thread:
        now = utcnow()
        async with self.db.write() as session:
            thread = Thread(user_id=user.id, title=chat.title[:300], model=chat.model, temperature=chat.temperature,
                            system_prompt=chat.system_prompt, created_at=chat.created_at, updated_at=now)
            session.add(thread)
            await session.flush()
            ids: dict[str, int] = {}
            for turn in chat.turns:
                message = Message(
                    thread_id=thread.id, user_id=user.id, parent_id=ids.get(turn.parent) if turn.parent else None,
                    role=turn.role, content=turn.content, status=turn.status, model=turn.model,
                    temperature=turn.temperature, meta=turn.meta, cost_usd=turn.meta.get("cost_usd"),
                    created_at=turn.created_at, updated_at=turn.created_at,
                )
                session.add(message)
                await session.flush()
                ids[turn.key] = message.id
            last = ids[chat.turns[-1].key] if chat.turns else None
            thread.current_leaf_id = ids.get(chat.leaf or "") or last
        return thread


def parse(data: bytes, max_file_bytes: int) -> list[Chat]:
    """Every chat in the file, or a 422 that says what the file is not."""
    files: dict[str, bytes] = {}
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            # Sizes from the directory, checked before inflating anything: no zip bomb gets read.
            if any(m.file_size > max(max_file_bytes, 16 * len(data)) for m in members):
                raise InvalidInput("A file inside the zip is larger than this server accepts.", code="invalid_import")
            names = [m.filename for m in members if m.filename.endswith(".json") and "/" not in m.filename]
            if len(names) != 1:
                raise _not_an_export()
            data = archive.read(names[0])
            files = {m.filename: archive.read(m) for m in members
                     if m.filename.startswith("attachments/") and not m.is_dir()}
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _not_an_export() from exc
    try:
        if isinstance(document, dict) and document.get("format") == "convo.thread":
            if document.get("version") != FORMAT_VERSION:
                raise InvalidInput(f"This Convo export has format version {document.get('version')!r}; this "
                                   f"server reads version {FORMAT_VERSION}.", code="unsupported_import")
            return [_convo(document, files)]
        if isinstance(document, list) and all(isinstance(c, dict) and "mapping" in c for c in document):
            if len(document) > MAX_CHATS:
                raise InvalidInput(f"At most {MAX_CHATS:,} chats can be imported at once.", code="too_many_chats")
            return [_chatgpt(c) for c in document]
    except ConvoError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"The file looks like an export but a part of it is malformed ({exc}).",
                           code="invalid_import") from exc
    raise _not_an_export()


def _convo(document: dict[str, Any], files: dict[str, bytes]) -> Chat:
    thread = document["thread"]
    turns = []
    known: set[str] = set()
    for m in sorted(document["messages"], key=lambda m: int(m["id"])):
        key, parent = str(m["id"]), m.get("parent_id")
        parent = str(parent) if parent is not None else None
        if parent is not None and parent not in known:
            raise ValueError(f"message {key} answers a message that is not in the file")
        role = m["role"] if m["role"] in ROLES else "user"
        status = m.get("status") if m.get("status") in FINISHED else "interrupted"
        turns.append(Turn(key, parent, role, str(m.get("content") or ""), _when(m.get("created_at")), status,
                          m.get("model"), m.get("temperature"), dict(m.get("meta") or {})))
        known.add(key)
    leaf = thread.get("current_leaf_id")
    attached = [(a["filename"], files[a["path"]]) for a in document.get("attachments", []) if a.get("path") in files]
    return Chat(str(thread.get("title") or ""), turns, str(leaf) if leaf is not None else None,
                _when(thread.get("created_at")), thread.get("model"), thread.get("temperature"),
                thread.get("system_prompt"), attached)


def _chatgpt(conversation: dict[str, Any]) -> Chat:
    """ChatGPT's tree: nodes with a parent, many without a message (the root) or with one nobody reads
    (system and tool steps). Those are skipped and their children hang from the nearest kept ancestor."""
    mapping: dict[str, Any] = conversation["mapping"]
    kept: dict[str, Turn] = {}

    def text_of(message: dict[str, Any]) -> str:
        content = message.get("content") or {}
        parts = content.get("parts") or ([content["text"]] if isinstance(content.get("text"), str) else [])
        return "\n\n".join(p for p in parts if isinstance(p, str)).strip()

    def anchor(node_id: str | None) -> str | None:
        seen = 0
        while node_id is not None and node_id not in kept and seen <= len(mapping):
            node_id = (mapping.get(node_id) or {}).get("parent")
            seen += 1
        return node_id if node_id in kept else None

    order = _parents_first(mapping)
    for node_id in order:
        message = mapping[node_id].get("message")
        if not message:
            continue
        role = (message.get("author") or {}).get("role")
        text = text_of(message)
        if role not in ("user", "assistant") or not text:
            continue
        model = (message.get("metadata") or {}).get("model_slug")
        kept[node_id] = Turn(node_id, anchor(mapping[node_id].get("parent")), role, text,
                             _when(message.get("create_time") or conversation.get("create_time")), model=model)
    leaf = anchor(conversation.get("current_node"))
    return Chat(str(conversation.get("title") or ""), [kept[n] for n in order if n in kept], leaf,
                _when(conversation.get("create_time")))


def _parents_first(mapping: dict[str, Any]) -> list[str]:
    order: list[str] = []
    placed: set[str] = set()
    for start in mapping:
        chain = []
        node: str | None = start
        while node is not None and node not in placed and node in mapping and node not in chain:
            chain.append(node)
            node = mapping[node].get("parent")
        for item in reversed(chain):
            placed.add(item)
            order.append(item)
    return order


def _when(value: Any) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        moment = datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utcnow()


def _not_an_export() -> InvalidInput:
    return InvalidInput("This is neither a Convo export (JSON or zip) nor ChatGPT's conversations.json.",
                        code="not_an_export")


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body
