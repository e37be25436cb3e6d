"""POST /api/import on a real server, on SQLite and PostgreSQL: Convo's own exports come back whole
(every version, the branch on screen, the files), ChatGPT's conversations.json becomes chats with their
branches, and a bad file is a clear 422 that adds nothing."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
import zipfile
from typing import Any

import httpx
import pytest

from convo.domain.imports import MAX_CHAT_MESSAGES
from tests.api.test_exports import wait_job
from tests.api.test_files import attach, db_rows, wait_ready
from tests.api.test_search import search
from tests.conftest import Server
from tests.support import Api


def import_file(api: Api, name: str, data: bytes) -> Any:
    return api.post("/api/import", files={"file": (name, data, "application/octet-stream")})


def active_contents(api: Api, thread_id: int) -> list[tuple[str, str]]:
    thread = api.get(f"/api/threads/{thread_id}").json()
    return [(m["role"], m["content"]) for m in thread["messages"]]


def test_a_convo_export_comes_back_with_every_version_and_its_files(api: Api) -> None:
    key = "zq" + uuid.uuid4().hex[:8]
    thread = api.thread(title=f"Trip {key}")
    attachment = attach(api, thread["id"], "packing.md", b"# Packing\n\nLanterns, rope and a map.\n")
    first = api.send(thread["id"], f"{key} first plan [[fake reply='Go north.']]")
    question = first.of("start")[0].data["user_message"]["id"]
    edited = api.stream("POST", f"/api/convo/messages/{question}/edit",
                        json={"content": f"{key} second plan [[fake reply='Go south.']]"})
    assert edited.last.event == "done"
    archive = api.get(f"/api/threads/{thread['id']}/export", params={"format": "zip"}).content

    response = import_file(api, "export.zip", archive)
    assert response.status_code == 200, response.text
    [imported] = response.json()["threads"]
    assert imported["title"] == f"Trip {key}" and imported["id"] != thread["id"]
    assert active_contents(api, imported["id"]) == active_contents(api, thread["id"])
    new_question = api.get(f"/api/threads/{imported['id']}").json()["messages"][0]
    versions = api.get(f"/api/convo/messages/{new_question['id']}/versions").json()["items"]
    assert [v["content"].split(" [[")[0] for v in versions] == [f"{key} first plan", f"{key} second plan"]
    # The file is uploaded and indexed again; the imported messages are searchable.
    [restored] = api.get(f"/api/threads/{imported['id']}/attachments").json()["items"]
    assert restored["filename"] == "packing.md" and restored["id"] != attachment["id"]
    assert wait_ready(api, restored["id"])["status"] == "ready"
    found = {i["thread_id"] for i in search(api, f"{key} plan")["items"]}
    assert found == {thread["id"], imported["id"]}


def chatgpt_export() -> list[dict[str, Any]]:
    def node(id_: str, parent: str | None, role: str | None, text: str = "", children: list[str] | None = None,
             t: float = 1_700_000_000.0) -> dict[str, Any]:
        message = None if role is None else {
            "id": id_, "author": {"role": role}, "create_time": t,
            "content": {"content_type": "text", "parts": [text]}, "metadata": {"model_slug": "gpt-4o"}}
        return {"id": id_, "message": message, "parent": parent, "children": children or []}

    mapping = {
        "root": node("root", None, None, children=["sys"]),
        "sys": node("sys", "root", "system", "", ["u1", "u2"]),
        "u1": node("u1", "sys", "user", "How tall is the lighthouse?", ["a1"]),
        "a1": node("a1", "u1", "assistant", "About 40 metres.", t=1_700_000_010.0),
        "u2": node("u2", "sys", "user", "How old is the lighthouse?", ["tool"], t=1_700_000_100.0),
        "tool": node("tool", "u2", "tool", "search results…", ["a2"]),
        "a2": node("a2", "tool", "assistant", "Built in 1874.", t=1_700_000_110.0),
    }
    return [{"title": "Lighthouse facts", "create_time": 1_700_000_000.0, "mapping": mapping, "current_node": "a2"},
            {"title": "Empty", "create_time": 1_700_000_000.0, "mapping": {"r": node("r", None, None)},
             "current_node": "r"}]


def test_chatgpt_conversations_become_chats_with_their_branches(api: Api) -> None:
    response = import_file(api, "conversations.json", json.dumps(chatgpt_export()).encode())
    assert response.status_code == 200, response.text
    lighthouse, empty = response.json()["threads"]
    assert lighthouse["title"] == "Lighthouse facts" and empty["title"] == "Empty"
    # The branch ChatGPT had open is the one on screen; the tool step is gone, its answer kept.
    assert active_contents(api, lighthouse["id"]) == [
        ("user", "How old is the lighthouse?"), ("assistant", "Built in 1874.")]
    question = api.get(f"/api/threads/{lighthouse['id']}").json()["messages"][0]
    versions = api.get(f"/api/convo/messages/{question['id']}/versions").json()["items"]
    assert [v["content"] for v in versions] == ["How tall is the lighthouse?", "How old is the lighthouse?"]
    assert question["created_at"].startswith("2023-11-14")
    assert active_contents(api, empty["id"]) == []


def test_bad_files_are_clear_422s_that_add_nothing(server: Server, api: Api) -> None:
    before = len(api.get("/api/threads").json()["items"])
    broken = {"format": "convo.thread", "version": 1, "thread": {"title": "x"},
              "messages": [{"id": 2, "parent_id": 1, "role": "user", "content": "orphan"}]}
    cases = [
        (b"\x89PNG not an export", "not_an_export"),
        (json.dumps({"hello": "world"}).encode(), "not_an_export"),
        (json.dumps(broken).encode(), "invalid_import"),
        (json.dumps({**broken, "version": 99}).encode(), "unsupported_import"),
        (json.dumps([{"mapping": {"a": {"parent": None, "message": {"author": "nobody"}}}}]).encode(), "invalid_import"),
    ]
    for data, code in cases:
        response = import_file(api, "file.json", data)
        assert response.status_code == 422 and response.json()["error"]["code"] == code, (data[:40], response.text)
    assert api.post("/api/import", content=b"{}", headers={"Content-Type": "application/json"}).status_code == 415
    assert api.post("/api/import", files={"other": ("a.json", b"[]")}).status_code == 422
    assert len(api.get("/api/threads").json()["items"]) == before

    response = import_file(api, "conversations.json", json.dumps(chatgpt_export()[:1]).encode())
    thread_id = response.json()["threads"][0]["id"]
    other = server.api()
    try:
        assert other.get(f"/api/threads/{thread_id}").status_code == 404
    finally:
        other.close()


# -- every export Convo writes comes back whole ----------------------------------------------------

PACKING = b"# Packing\n\nLanterns, rope and a map of the northern trail.\n"
NOTES = "Notes: the ferry leaves at nine, ümlaut and 日本語 included.\n".encode()


def rich_chat(api: Api, key: str) -> int:
    """A chat with every kind of version: an edited question, a regenerated and a hand-corrected answer,
    a grounded answer (citations), a file, and the branch on screen not being the newest one."""
    thread = api.thread(title=f"Trip {key}", model="fake-gpt", temperature=0.4, system_prompt="Be brief.")
    attach(api, thread["id"], "packing.md", PACKING)
    first = api.send(thread["id"], f"{key} first plan [[fake reply='Go north.']]")
    start = first.of("start")[0].data
    question, answer = start["user_message"]["id"], start["assistant_message"]["id"]
    assert api.stream("POST", f"/api/convo/messages/{answer}/regenerate", json={}).last.event == "done"
    corrected = api.post(f"/api/convo/messages/{answer}/edit", json={"content": "Go north-east."})
    assert corrected.status_code == 201, corrected.text
    edited = api.stream("POST", f"/api/convo/messages/{question}/edit",
                        json={"content": f"{key} second plan [[fake reply='Go south.']]"})
    assert edited.last.event == "done"
    assert api.send(thread["id"], f"{key} and then? [[fake reply='Rest.']]").last.event == "done"
    # Back to the first question's branch: the leaf on screen is not the last message written.
    switched = api.post(f"/api/threads/{thread['id']}/switch", json={"message_id": corrected.json()["id"]})
    assert switched.status_code == 200, switched.text
    return thread["id"]


@pytest.fixture(scope="module")
def source(server: Server) -> tuple[Api, list[int]]:
    api = server.api()
    key = "rt" + uuid.uuid4().hex[:8]
    rich = rich_chat(api, key)
    plain = api.thread(title=f"Ferry {key}")
    attach(api, plain["id"], "notes.txt", NOTES)
    assert api.send(plain["id"], f"{key} when? [[fake reply='At nine.']]").last.event == "done"
    empty = api.thread(title="")
    return api, [rich, plain["id"], empty["id"]]


def exported(api: Api, thread_id: int) -> dict[str, Any]:
    response = api.get(f"/api/threads/{thread_id}/export", params={"format": "json"})
    assert response.status_code == 200, response.text
    return response.json()


def canonical(document: dict[str, Any], *, with_files: bool = True) -> dict[str, Any]:
    """A chat with its ids replaced by positions: what must survive a round trip."""
    messages = sorted(document["messages"], key=lambda m: m["id"])
    index = {m["id"]: i for i, m in enumerate(messages)}
    files = {a["id"]: a["filename"] for a in document["attachments"]} if with_files else {}

    def meta(m: dict[str, Any]) -> dict[str, Any]:
        meta = dict(m["meta"])
        if "edited_from" in meta:
            meta["edited_from"] = index[meta["edited_from"]]
        if "citations" in meta:
            meta["citations"] = [{**c, "chunk_id": None, "attachment_id": files.get(c["attachment_id"])}
                                 for c in meta["citations"]]
        return meta

    thread = document["thread"]
    return {
        "title": thread["title"], "model": thread["model"], "temperature": thread["temperature"],
        "system_prompt": thread["system_prompt"],
        "leaf": index.get(thread["current_leaf_id"]),
        "messages": [(index.get(m["parent_id"]), m["role"], m["content"], m["status"], m["model"], m["temperature"],
                      m["created_at"], meta(m)) for m in messages],
    }


def files_of(api: Api, thread_id: int) -> list[tuple[str, bytes]]:
    items = api.get(f"/api/threads/{thread_id}/attachments").json()["items"]
    return sorted((a["filename"], api.get(f"/api/attachments/{a['id']}/content").content) for a in items)


def job_download(api: Api, path: str, fmt: str) -> bytes:
    started = api.post(path, json={"format": fmt} if path.startswith("/api/threads") else {"scope": "all"})
    assert started.status_code == 202, started.text
    job = wait_job(api, started.json()["job_id"])
    assert job["status"] == "succeeded", job
    return api.get(job["download_url"]).content


@pytest.mark.parametrize("how", ["json", "zip", "job-json", "job-zip", "job-all"])
def test_every_export_imports_back_whole_into_an_empty_account(server: Server, source: tuple, how: str) -> None:
    owner, thread_ids = source
    if how == "job-all":
        data, chats = job_download(owner, "/api/export/jobs", "zip"), thread_ids
    elif how.startswith("job-"):
        data, chats = job_download(owner, f"/api/threads/{thread_ids[0]}/export/jobs", how[4:]), thread_ids[:1]
    else:
        response = owner.get(f"/api/threads/{thread_ids[0]}/export", params={"format": how})
        data, chats = response.content, thread_ids[:1]
    with_files = how.endswith(("zip", "all"))

    newcomer = server.api()
    try:
        response = import_file(newcomer, f"export.{'zip' if with_files else 'json'}", data)
        assert response.status_code == 200, response.text
        imported = [t["id"] for t in response.json()["threads"]]
        assert len(imported) == len(chats)
        for original, copy in zip(chats, imported, strict=True):
            got, want = canonical(exported(newcomer, copy)), canonical(exported(owner, original), with_files=with_files)
            assert len(got["messages"]) == len(want["messages"])
            for n, (mine, theirs) in enumerate(zip(got.pop("messages"), want.pop("messages"), strict=True)):
                assert mine == theirs, n
            assert got == want
            expected = files_of(owner, original) if with_files else []
            assert files_of(newcomer, copy) == expected
        # What the owner sees on screen, the newcomer sees too.
        assert active_contents(newcomer, imported[0]) == active_contents(owner, chats[0])
    finally:
        newcomer.close()


# -- an import is not trusted ----------------------------------------------------------------------


def test_an_import_writes_no_spending_and_nothing_in_the_future(server: Server, api: Api) -> None:
    before = api.get("/api/budget").json()
    now = time.time()
    document = {
        "format": "convo.thread", "version": 1, "thread": {"title": "Forged", "created_at": "2099-01-01T00:00:00Z"},
        "messages": [
            {"id": 1, "role": "user", "content": "hi", "created_at": now},
            {"id": 2, "parent_id": 1, "role": "assistant", "content": "a", "created_at": "2099-01-01T00:00:00Z",
             "meta": {"cost_usd": -1_000_000, "citations": [{"attachment_id": 1, "filename": "x"}], "evil": 1}},
            {"id": 3, "parent_id": 1, "role": "assistant", "content": "b", "created_at": now,
             "temperature": "hot", "model": "m" * 300, "meta": {"cost_usd": 5.0, "prompt_tokens": 10}},
        ],
    }
    response = import_file(api, "forged.json", json.dumps(document).encode())
    assert response.status_code == 200, response.text
    [thread] = response.json()["threads"]
    after = api.get("/api/budget").json()
    assert (after["spent_usd"], after["reserved_usd"]) == (before["spent_usd"], before["reserved_usd"])
    rows = db_rows(server, "SELECT cost_usd, created_at FROM messages WHERE thread_id = %s", thread["id"])
    assert len(rows) == 3 and all(cost is None for cost, _ in rows)
    # The chat reads back fine (a typed field that the API refuses would make this a 500).
    full = api.get(f"/api/threads/{thread['id']}")
    assert full.status_code == 200, full.text
    assert full.json()["created_at"] < "2099"
    versions = api.get(f"/api/convo/messages/{full.json()['messages'][1]['id']}/versions").json()["items"]
    forged, priced = sorted(versions, key=lambda v: v["content"])
    assert forged["created_at"] < "2099" and forged["meta"] == {
        "citations": [{"n": 1, "chunk_id": None, "attachment_id": None, "filename": "x", "score": None,
                       "bm25_score": None, "vector_score": None, "snippet": ""}]}
    assert priced["meta"] == {"cost_usd": 5.0, "prompt_tokens": 10}
    assert (priced["temperature"], priced["model"]) == (None, None)


def test_hostile_zips_are_refused_without_being_inflated(api: Api) -> None:
    before = len(api.get("/api/threads").json()["items"])
    document = json.dumps({"format": "convo.thread", "version": 1, "thread": {"title": "x"}, "messages": []})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.json", document)
        for i in range(8):  # 8 x 24 MB of zeros: each under the file limit, 192 MB together
            archive.writestr(f"attachments/{i}-zeros.txt", b"\0" * (24 * 1024 * 1024))
    bomb = buffer.getvalue()
    started = time.monotonic()
    response = import_file(api, "bomb.zip", bomb)
    assert response.status_code == 422 and response.json()["error"]["code"] == "import_too_large", response.text
    assert time.monotonic() - started < 10
    nested = io.BytesIO()
    with zipfile.ZipFile(nested, "w") as archive:
        archive.writestr("inner.zip", bomb)
    response = import_file(api, "nested.zip", nested.getvalue())
    assert response.status_code == 422 and response.json()["error"]["code"] == "nested_archive", response.text
    # The import limit is the upload limit, which nginx's client_max_body_size leaves room for.
    too_big = import_file(api, "big.json", b" " * (25 * 1024 * 1024 + 1))
    assert too_big.status_code == 413, too_big.text
    assert len(api.get("/api/threads").json()["items"]) == before


# -- the server keeps answering while it imports ----------------------------------------------------


def long_chatgpt_chain(target_bytes: int) -> bytes:
    """One ChatGPT conversation: a single chain of turns, listed leaf first, just under `target_bytes` or
    as many turns as one chat may have."""
    nodes = []
    size, i = 200, 0
    while True:
        node = {"id": f"n{i}", "parent": f"n{i - 1}" if i else None, "children": [f"n{i + 1}"],
                "message": {"id": f"n{i}", "author": {"role": "user" if i % 2 == 0 else "assistant"},
                            "create_time": 1_700_000_000 + i,
                            "content": {"content_type": "text", "parts": [f"turn {i} of a very long chat"]},
                            "metadata": {}}}
        size += len(json.dumps(node)) + len(f'"n{i}": ') + 2
        if size > target_bytes or i == MAX_CHAT_MESSAGES:
            break
        nodes.append(node)
        i += 1
    mapping = {n["id"]: n for n in reversed(nodes)}
    return json.dumps([{"title": "Long", "create_time": 1_700_000_000, "mapping": mapping,
                        "current_node": nodes[-1]["id"]}]).encode()


def many_chats_zip(chats: int, messages: int, chars: int) -> bytes:
    """An "every chat" export of many mid-sized chats, its text compressible as real chats are."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for c in range(chats):
            document = {"format": "convo.thread", "version": 1,
                        "thread": {"id": c, "title": f"Chat {c}", "current_leaf_id": messages},
                        "messages": [{"id": m, "parent_id": m - 1 if m > 1 else None,
                                      "role": "user" if m % 2 else "assistant",
                                      "content": f"message {m} of chat {c}: " + "the quick brown fox " * (chars // 20),
                                      "status": "complete", "created_at": "2026-01-01T00:00:00+00:00",
                                      "meta": {"prompt_tokens": 10, "completion_tokens": 20}}
                                     for m in range(1, messages + 1)]}
            archive.writestr(f"Chat-{c}-{c}/Chat-{c}.json", json.dumps(document, indent=2))
    return buffer.getvalue()


def healthz_while(server: Server, run: Any) -> tuple[Any, float, list[float]]:
    """`run()` in a thread; meanwhile GET /healthz every 20 ms. Returns run's result, how long it took
    and the latencies (seconds)."""
    box: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: box.update(result=run()))
    latencies: list[float] = []
    with httpx.Client(base_url=server.url, timeout=30) as probe:
        probe.get("/healthz")  # a warm connection: the probe measures the server, not a TCP handshake
        began = time.perf_counter()
        worker.start()
        while worker.is_alive():
            started = time.perf_counter()
            assert probe.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
    worker.join()
    return box["result"], time.perf_counter() - began, latencies


@pytest.mark.timeout(900)  # two imports at the limits, on a machine other tests share
def test_healthz_answers_within_100ms_while_the_largest_imports_run(own_server: Server) -> None:
    api = own_server.api()
    limit = 25 * 1024 * 1024  # CONVO_MAX_UPLOAD_MB's default, the import limit
    chain = long_chatgpt_chain(limit - 100 * 1024)
    # 30,000 messages in 150 chats, about 3x the limit inflated (4x is refused).
    bundle = many_chats_zip(chats=150, messages=200, chars=2_000)
    inflated = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(bundle)).infolist())
    assert len(bundle) < limit and 2.5 * limit < inflated < 4 * limit
    for name, data in (("conversations.json", chain), ("export.zip", bundle)):
        response, took, latencies = healthz_while(
            own_server, lambda name=name, data=data: api.http.post(
                "/api/import", headers=api.headers, files={"file": (name, data)}, timeout=600))
        assert response.status_code == 200, response.text
        if name == "conversations.json":
            # Written over many transactions, the chain is still one chain, its leaf on screen.
            [thread] = response.json()["threads"]
            turns = json.loads(data)[0]["mapping"]
            [(count, with_parent, last)] = db_rows(
                own_server, "SELECT count(*), count(parent_id), max(id) FROM messages WHERE thread_id = %s", thread["id"])
            assert (count, with_parent) == (len(turns), len(turns) - 1)
            assert db_rows(own_server, "SELECT current_leaf_id FROM threads WHERE id = %s", thread["id"]) == [(last,)]
        assert len(latencies) >= 20, (name, len(latencies))
        ordered = sorted(latencies)
        p95 = ordered[int(len(ordered) * 0.95)]
        print(f"{name}: {len(data) / 1e6:.1f} MB imported in {took:.1f} s; healthz p50 "
              f"{ordered[len(ordered) // 2] * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms")
        # The 95th percentile, not the maximum: the worst few catch garbage collection (every large
        # allocation does that, imports or not) or the machine busy with other tests.
        assert p95 < 0.1, (name, p95, ordered[-5:])
    assert len(api.get("/api/threads", params={"limit": 200}).json()["items"]) == 151
    api.close()
