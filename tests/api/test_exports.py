"""GET /api/threads/{id}/export on a real server, on SQLite and PostgreSQL: JSON with the whole version
tree, Markdown of the branch on screen, a zip of both with the original files; owners only."""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tests.api.test_files import attach, db_rows
from tests.conftest import Server
from tests.support import Api


def export(api: Api, thread_id: int, fmt: str) -> Any:
    response = api.get(f"/api/threads/{thread_id}/export", params={"format": fmt})
    assert response.status_code == 200, response.text
    return response


def test_json_holds_every_version_and_markdown_the_branch_on_screen(api: Api) -> None:
    thread = api.thread(title="Café plans 東京")
    first = api.send(thread["id"], "Where should we eat? [[fake reply='Try the bistro.']]")
    question_id = first.of("start")[0].data["user_message"]["id"]
    # A second version of the question: Markdown shows it, JSON keeps both.
    edited = api.stream("POST", f"/api/convo/messages/{question_id}/edit",
                        json={"content": "Where should we drink coffee? [[fake reply='The café by the river.']]"})
    assert edited.last.event == "done", edited.events

    response = export(api, thread["id"], "json")
    assert response.headers["content-type"] == "application/json"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;") and unquote(disposition.split("''")[1]) == "Café-plans-東京.json"
    document = response.json()
    assert document["format"] == "convo.thread" and document["thread"]["title"] == "Café plans 東京"
    contents = [m["content"] for m in document["messages"]]
    assert any("eat?" in c for c in contents) and any("coffee?" in c for c in contents)
    assert "Try the bistro." in contents and "The café by the river." in contents
    by_id = {m["id"]: m for m in document["messages"]}
    answers = [m for m in document["messages"] if m["role"] == "assistant"]
    assert all(by_id[a["parent_id"]]["role"] == "user" for a in answers)  # the tree is whole
    assert all("cost_usd" in a["meta"] for a in answers)

    markdown = export(api, thread["id"], "md")
    assert markdown.headers["content-type"].startswith("text/markdown")
    text = markdown.text
    assert text.startswith("# Café plans 東京\n") and "## You" in text and "## Assistant (fake-gpt)" in text
    assert "coffee?" in text and "The café by the river." in text
    assert "eat?" not in text and "bistro" not in text  # the other branch is not on screen


def test_zip_has_both_and_the_original_files(api: Api) -> None:
    thread = api.thread(title="with files")
    attachment = attach(api, thread["id"], "notes.md", b"# Notes\n\nThe lighthouse keeper logs ships.\n")
    api.send(thread["id"], "summarise [[fake reply='Ships are logged.']]")
    archive = zipfile.ZipFile(io.BytesIO(export(api, thread["id"], "zip").content))
    names = set(archive.namelist())
    assert {"with-files.json", "with-files.md", f"attachments/{attachment['id']}-notes.md"} <= names
    assert archive.read(f"attachments/{attachment['id']}-notes.md").startswith(b"# Notes")
    document = json.loads(archive.read("with-files.json"))
    assert document["attachments"][0]["path"] == f"attachments/{attachment['id']}-notes.md"
    assert "Ships are logged." in archive.read("with-files.md").decode()


def test_exports_are_the_owners_only_and_formats_are_checked(server: Server, api: Api) -> None:
    thread = api.thread(title="private")
    other = server.api()
    try:
        for fmt in ("json", "md", "zip"):
            response = other.get(f"/api/threads/{thread['id']}/export", params={"format": fmt})
            assert response.status_code == 404, fmt
    finally:
        other.close()
    assert api.get(f"/api/threads/{thread['id']}/export", params={"format": "pdf"}).status_code == 422
    assert api.get("/api/threads/0/export").status_code == 422
    untitled = export(api, api.thread()["id"], "md")
    assert untitled.text.startswith("# Untitled chat")


def wait_job(api: Api, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = api.get(f"/api/export/jobs/{job_id}").json()
        if body["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def exported_jobs(api: Api, status: str) -> float:
    found = re.search(rf'^convo_export_jobs_total{{status="{status}"}} (\S+)$', api.get("/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def test_background_exports_of_one_chat_and_of_every_chat(server: Server) -> None:
    api = server.api()
    try:
        first, second = api.thread(title="First"), api.thread(title="Second")
        api.send(first["id"], "one [[fake reply='Uno.']]")
        api.send(second["id"], "two [[fake reply='Dos.']]")
        succeeded = exported_jobs(api, "succeeded")

        started = api.post(f"/api/threads/{first['id']}/export/jobs", json={"format": "md"})
        assert started.status_code == 202, started.text
        assert started.json()["status"] in ("queued", "running", "succeeded")
        job = wait_job(api, started.json()["job_id"])
        assert job["status"] == "succeeded" and job["progress"] == 1.0 and job["expires_at"]
        download = api.get(job["download_url"])
        assert download.status_code == 200 and "Uno." in download.text
        assert unquote(download.headers["content-disposition"].split("''")[1]) == "First.md"

        everything = api.post("/api/export/jobs", json={"scope": "all", "format": "zip"})
        assert everything.status_code == 202, everything.text
        job = wait_job(api, everything.json()["job_id"])
        assert job["status"] == "succeeded"
        archive = zipfile.ZipFile(io.BytesIO(api.get(job["download_url"]).content))
        names = set(archive.namelist())
        assert {f"First-{first['id']}/First.json", f"Second-{second['id']}/Second.md"} <= names
        assert "Dos." in archive.read(f"Second-{second['id']}/Second.md").decode()
        assert exported_jobs(api, "succeeded") == succeeded + 2

        # A day later the export is gone: the next export sweeps it, row and file.
        expired = db_rows(server, "UPDATE export_jobs SET expires_at = %s WHERE id = %s RETURNING id",
                          datetime(2000, 1, 1, tzinfo=UTC), job["job_id"])
        assert len(expired) == 1
        assert api.post(f"/api/threads/{second['id']}/export/jobs", json={"format": "json"}).status_code == 202
        assert api.get(f"/api/export/jobs/{job['job_id']}").status_code == 404
        folder = Path(server.env["CONVO_DATA_DIR"]) / "exports" / str(api.user["id"])
        assert not (folder / f"{job['job_id']}.zip").exists()

        other = server.api()
        try:
            for path in (f"/api/export/jobs/{job['job_id']}", job["download_url"]):
                assert other.get(path).status_code == 404
            assert other.post(f"/api/threads/{first['id']}/export/jobs", json={"format": "md"}).status_code == 404
        finally:
            other.close()
        assert api.post("/api/export/jobs", json={"scope": "all", "format": "md"}).status_code == 422
        assert api.get("/api/export/jobs/not-a-job").status_code == 422
        assert api.get(f"/api/export/jobs/{'0' * 32}").status_code == 404
    finally:
        api.close()
