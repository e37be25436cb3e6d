"""Reading import files, without a server: hostile zips are refused from their directory or as clear 422s,
fields are validated as the API validates them, and ChatGPT trees are read in linear time."""

from __future__ import annotations

import io
import json
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from convo.domain import imports
from convo.domain.imports import MAX_CONTENT, Chat, parse
from convo.errors import InvalidInput

LIMIT = 1024 * 1024  # the import limit these tests read under


def convo_document(messages: list[dict[str, Any]] | None = None, **thread: Any) -> dict[str, Any]:
    return {
        "format": "convo.thread", "version": 1,
        "thread": {"id": 7, "title": "Trip", "model": None, "temperature": None, "system_prompt": None,
                   "current_leaf_id": None, "created_at": "2026-01-01T10:00:00+00:00", **thread},
        "messages": messages if messages is not None else [
            {"id": 1, "parent_id": None, "role": "user", "content": "Where to?", "status": "complete",
             "created_at": "2026-01-01T10:00:00+00:00", "meta": {}},
            {"id": 2, "parent_id": 1, "role": "assistant", "content": "North.", "status": "complete",
             "model": "fake-gpt", "created_at": "2026-01-01T10:00:05+00:00", "meta": {}},
        ],
        "attachments": [{"id": 11, "filename": "notes.md", "path": "attachments/11-notes.md"}],
    }


def zipped(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def read(data: bytes | dict[str, Any] | list[Any], scratch: Path) -> list[Chat]:
    if not isinstance(data, bytes):
        data = json.dumps(data).encode()
    return parse(data, LIMIT, scratch)


def refused(data: bytes | dict[str, Any] | list[Any], scratch: Path) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        read(data, scratch)
    assert caught.value.status == 422
    return caught.value


# -- zips ------------------------------------------------------------------------------------------


def test_the_zip_of_every_chat_gives_each_chat_its_own_files(tmp_path: Path) -> None:
    first, second = convo_document(), convo_document(title="Ferry")
    second["attachments"] = [{"id": 12, "filename": "notes.md", "path": "attachments/12-notes.md"}]
    data = zipped({
        "Trip-7/Trip.json": json.dumps(first).encode(), "Trip-7/Trip.md": b"# Trip",
        "Trip-7/attachments/11-notes.md": b"first notes",
        "Ferry-8/Ferry.json": json.dumps(second).encode(), "Ferry-8/Ferry.md": b"# Ferry",
        "Ferry-8/attachments/12-notes.md": b"second notes",
    })
    chats = read(data, tmp_path)
    assert [c.title for c in chats] == ["Trip", "Ferry"]
    assert [[(name, path.read_bytes(), old) for name, path, old in c.files] for c in chats] == [
        [("notes.md", b"first notes", 11)], [("notes.md", b"second notes", 12)]]
    # A JSON file among a chat's attachments is a file, not another chat.
    one = zipped({"Trip.json": json.dumps(first).encode(), "attachments/11-notes.json": b"{}"})
    assert len(read(one, tmp_path)) == 1


def test_a_zip_bomb_is_refused_from_its_directory_before_anything_is_inflated(tmp_path: Path) -> None:
    # 16 members of 1 MB of zeros, each within the 1 MB file limit: a few KB on the wire, 16 MB inflated
    # (four times more than 4x the limit allows).
    zeros = b"\0" * LIMIT
    bomb = zipped({"Trip.json": json.dumps(convo_document()).encode(),
                   **{f"attachments/{i}-zeros.txt": zeros for i in range(16)}})
    assert len(bomb) < LIMIT
    started = time.perf_counter()
    assert refused(bomb, tmp_path).code == "import_too_large"
    assert time.perf_counter() - started < 2  # nothing was inflated
    assert list(tmp_path.iterdir()) == []


def test_too_many_members_and_nested_archives_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports, "MAX_MEMBERS", 50)
    many = zipped({"Trip.json": json.dumps(convo_document()).encode(),
                   **{f"attachments/{i}-a.txt": b"a" for i in range(60)}})
    assert refused(many, tmp_path).code == "import_too_large"
    nested = zipped({"export.zip": zipped({"Trip.json": json.dumps(convo_document()).encode()})})
    assert refused(nested, tmp_path).code == "nested_archive"


def test_only_the_files_an_export_names_are_read(tmp_path: Path) -> None:
    data = bytearray(zipped({"Trip.json": json.dumps(convo_document()).encode(),
                             "attachments/11-notes.md": b"notes", "attachments/99-junk.txt": b"j" * 1000},
                            zipfile.ZIP_STORED))
    # Damage the member nobody names: it is never read, so the import still works.
    at = bytes(data).index(b"j" * 1000)
    data[at:at + 4] = b"XXXX"
    [chat] = read(bytes(data), tmp_path)
    assert [(name, path.read_bytes()) for name, path, _ in chat.files] == [("notes.md", b"notes")]


def _patched(data: bytes, name: bytes, *, flag: int | None = None, method: int | None = None) -> bytes:
    """`data` with the named member's flags or compression method changed in both of its headers."""
    out = bytearray(data)
    for signature, flag_at, method_at, name_at in ((b"PK\x03\x04", 6, 8, 30), (b"PK\x01\x02", 8, 10, 46)):
        start = 0
        while (at := bytes(out).find(signature, start)) >= 0:
            start = at + 4
            if bytes(out[at + name_at:at + name_at + len(name)]) != name:
                continue
            if flag is not None:
                out[at + flag_at] |= flag
            if method is not None:
                out[at + method_at:at + method_at + 2] = method.to_bytes(2, "little")
    return bytes(out)


def test_damaged_encrypted_or_unknown_members_are_clear_422s(tmp_path: Path) -> None:
    document = json.dumps(convo_document()).encode()
    good = zipped({"Trip.json": document, "attachments/11-notes.md": b"some notes " * 100})
    # A flipped byte in the deflated notes: a CRC or inflate error, from the file the export names.
    broken = bytearray(good)
    at = bytes(broken).index(b"attachments/11-notes.md") + len("attachments/11-notes.md") + 5
    broken[at] ^= 0xFF
    cases = {
        "damaged": bytes(broken),
        "encrypted": _patched(good, b"Trip.json", flag=0x1),
        "unknown method": _patched(good, b"Trip.json", method=99),
        "truncated": good[: len(good) // 2] + good[-22:],
    }
    for what, data in cases.items():
        error = refused(data, tmp_path)
        assert error.code in ("invalid_import", "not_an_export"), (what, error.code, error.message)


# -- fields ----------------------------------------------------------------------------------------


def test_fields_are_validated_like_the_api(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    messages = [
        {"id": 1, "role": "user", "content": "x" * (MAX_CONTENT + 5), "created_at": 1e20, "temperature": "hot",
         "model": "m" * 500, "meta": {"cost_usd": -1_000_000, "citations": "nope", "injected": {"x": 1}}},
        {"id": 2, "parent_id": 1, "role": "assistant", "content": "ok", "created_at": -1e18, "temperature": 5,
         "status": "streaming", "meta": {"cost_usd": 0.25, "prompt_tokens": 12, "error": "not a dict",
                                         "provider": "fakeai", "edited_from": 1}},
        {"id": 3, "parent_id": 1, "role": "wizard", "content": "later", "created_at": "2999-01-01T00:00:00",
         "temperature": 0.7, "meta": {"edited_from": 2, "citations": [
             {"n": 1, "chunk_id": 5, "attachment_id": 11, "filename": "notes.md", "snippet": "s", "score": 1.5}]}},
    ]
    [chat] = read(convo_document(messages, temperature=9, model="fake-gpt", current_leaf_id=3), tmp_path)
    first, second, third = chat.turns
    assert len(first.content) == MAX_CONTENT
    assert first.temperature is None and first.model is None and third.temperature == 0.7
    assert chat.temperature is None and chat.model == "fake-gpt" and chat.leaf == "3"
    # Times: never in the future, never before 1970, never an error.
    assert now - timedelta(minutes=1) < first.created_at <= datetime.now(UTC)
    assert second.created_at == datetime(1970, 1, 1, tzinfo=UTC)
    assert third.created_at <= datetime.now(UTC)
    # Meta: only Convo's own keys, with their types; a negative cost is no cost at all.
    assert first.meta == {}
    assert second.meta == {"cost_usd": 0.25, "prompt_tokens": 12, "provider": "fakeai", "edited_from": "1"}
    assert third.meta["edited_from"] == "2" and third.meta["citations"] == [
        {"n": 1, "chunk_id": None, "attachment_id": 11, "filename": "notes.md", "score": 1.5, "bm25_score": None,
         "vector_score": None, "snippet": "s"}]
    assert (second.status, third.role) == ("interrupted", "user")


def test_bad_values_are_422s_not_500s(tmp_path: Path) -> None:
    def message(**fields: Any) -> dict[str, Any]:
        return convo_document([{"id": 1, "role": "user", "content": "hi", **fields}])

    cases = [
        message(created_at="the day after tomorrow"),
        message(created_at=[2026]),
        message(content=12),
        message(id="one"),
        convo_document(system_prompt="s" * 20_001),
        convo_document([{"id": 1, "role": "user"}, {"id": 1, "role": "user"}]),
        [{"title": "t", "mapping": {"a": {"parent": None, "message": {
            "author": {"role": "user"}, "create_time": "soon", "content": {"parts": ["hi"]}}}}}],
    ]
    for case in cases:
        assert refused(case, tmp_path).code == "invalid_import", case
    assert refused(b"[" * 100_000 + b"]" * 100_000, tmp_path).code == "invalid_import"  # RecursionError
    assert refused(b'{"format": "convo.thread", "version": 1, "x": NaN}', tmp_path).code == "not_an_export"
    # Extreme but well-formed times are clamped, whatever their form.
    for value in (1e20, -1e18, 2**70, "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"):
        [chat] = read(message(created_at=value), tmp_path)
        assert datetime(1970, 1, 1, tzinfo=UTC) <= chat.turns[0].created_at <= datetime.now(UTC)


def test_messages_are_capped_per_chat_and_per_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports, "MAX_CHAT_MESSAGES", 10)
    monkeypatch.setattr(imports, "MAX_MESSAGES", 15)
    chain = [{"id": i, "parent_id": i - 1 if i > 1 else None, "role": "user", "content": "hi"} for i in range(1, 12)]
    assert refused(convo_document(chain), tmp_path).code == "too_many_messages"
    eight = chain[:8]
    both = zipped({"a-1/a.json": json.dumps(convo_document(eight)).encode(),
                   "b-2/b.json": json.dumps(convo_document(eight)).encode()})
    assert refused(both, tmp_path).code == "too_many_messages"
    assert len(read(zipped({"a-1/a.json": json.dumps(convo_document(eight)).encode()}), tmp_path)) == 1


# -- ChatGPT ---------------------------------------------------------------------------------------


def chatgpt_chain(n: int, *, skipped_every: int = 0) -> list[dict[str, Any]]:
    """One conversation: a chain of `n` nodes listed leaf first (the worst order for a naive sort)."""
    mapping = {}
    for i in range(n):
        skipped = skipped_every and i % skipped_every
        role = "tool" if skipped else ("user" if i % 2 == 0 else "assistant")
        mapping[f"n{i}"] = {"id": f"n{i}", "parent": f"n{i - 1}" if i else None,
                            "message": {"author": {"role": role}, "create_time": 1_700_000_000 + i,
                                        "content": {"content_type": "text", "parts": [f"turn {i}"]}}}
    return [{"title": "Long", "create_time": 1_700_000_000, "current_node": f"n{n - 1}",
             "mapping": dict(reversed(mapping.items()))}]


def test_a_100k_node_chatgpt_chain_is_read_in_linear_time(tmp_path: Path) -> None:
    data = json.dumps(chatgpt_chain(100_000)).encode()
    started = time.perf_counter()
    [chat] = parse(data, 64 * 1024 * 1024, tmp_path)
    elapsed = time.perf_counter() - started
    assert len(chat.turns) == 100_000 and chat.leaf == "n99999"
    assert all(t.parent == f"n{i - 1}" for i, t in enumerate(chat.turns) if i)
    # A few seconds on a busy 2-core machine; the quadratic version took minutes.
    assert elapsed < 30, elapsed


def test_kept_messages_under_a_long_skipped_run_are_anchored_once(tmp_path: Path) -> None:
    # 60,000 tool steps under one question, and a branch off every 7th of them: memoised, the run is
    # walked once instead of once per branch.
    [conversation] = chatgpt_chain(60_000, skipped_every=10**9)
    mapping = conversation["mapping"]
    for i in range(1, 60_000, 7):
        mapping[f"b{i}"] = {"id": f"b{i}", "parent": f"n{i}", "message": {
            "author": {"role": "user"}, "create_time": 1_700_000_000, "content": {"parts": [f"branch {i}"]}}}
    started = time.perf_counter()
    [chat] = read([conversation], tmp_path)
    assert time.perf_counter() - started < 30
    assert len(chat.turns) == 1 + len(range(1, 60_000, 7))
    assert {t.parent for t in chat.turns[1:]} == {"n0"} and chat.leaf == "n0"
