"""POST /api/import on a real server, on SQLite and PostgreSQL: Convo's own exports come back whole
(every version, the branch on screen, the files), ChatGPT's conversations.json becomes chats with their
branches, and a bad file is a clear 422 that adds nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.api.test_files import attach, wait_ready
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
