"""GET /api/threads/{id}/export on a real server, on SQLite and PostgreSQL: JSON with the whole version
tree, Markdown of the branch on screen, a zip of both with the original files; owners only."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.api.test_files import attach, db_rows, upload, wait_ready
from tests.conftest import Server, _fresh_pg_database, make_env
from tests.fakes.upstream import FakeUpstream
from tests.support import Api, assert_responsive


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


def expire(server: Server, job_id: str) -> None:
    expired = db_rows(server, "UPDATE export_jobs SET expires_at = %s WHERE id = %s RETURNING id",
                      datetime(2000, 1, 1, tzinfo=UTC), job_id)
    assert len(expired) == 1


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

        # A day later the export is gone: downloading it says so, and deletes it, row and file.
        folder = Path(server.env["CONVO_DATA_DIR"]) / "exports" / str(api.user["id"])
        assert (folder / f"{job['job_id']}.zip").is_file()
        expire(server, job["job_id"])
        gone = api.get(job["download_url"])
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "export_expired", gone.text
        assert "expired" in gone.json()["error"]["message"]
        assert not (folder / f"{job['job_id']}.zip").exists()
        assert api.get(f"/api/export/jobs/{job['job_id']}").status_code == 404

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


@pytest.fixture
def sweeping_server(backend_url: str | None, fake_upstream: FakeUpstream, tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own that sweeps expired exports twice a second."""
    url = backend_url and _fresh_pg_database(backend_url, f"convo_sweep_{os.getpid()}")
    srv = Server(tmp_path, make_env(tmp_path, fake_upstream, url, CONVO_EXPORT_SWEEP_SECONDS="0.5"))
    if url:
        assert srv.convo("migrate").returncode == 0
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def db_time(server: Server, moment: datetime) -> Any:
    """A time as the server's database stores it (SQLite: naive UTC text)."""
    if server.env.get("DATABASE_URL"):
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ")


def test_expired_exports_are_swept_without_any_request_and_interrupted_jobs_retry_once(
        sweeping_server: Server) -> None:
    server = sweeping_server
    api = server.api()
    try:
        thread = api.thread(title="Kept a day")
        api.send(thread["id"], "hello [[fake reply='Hi.']]")
        job = wait_job(api, api.post(f"/api/threads/{thread['id']}/export/jobs", json={"format": "md"}).json()["job_id"])
        folder = Path(server.env["CONVO_DATA_DIR"]) / "exports" / str(api.user["id"])
        assert job["status"] == "succeeded" and files_in(folder) == [f"{job['job_id']}.md"]
        expire(server, job["job_id"])
        deadline = time.monotonic() + 15
        while files_in(folder) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert files_in(folder) == [], "housekeeping deletes an expired export's file"
        assert api.get(f"/api/export/jobs/{job['job_id']}").status_code == 404

        # Two jobs the process was running when it died: one on its first run goes again, one that was
        # already on its second is given up with a reason, and both are forgotten after a day.
        created = db_time(server, datetime.now(UTC))
        for job_id, attempts in (("a" * 32, 1), ("b" * 32, 2)):
            db_rows(server, "INSERT INTO export_jobs (id, user_id, thread_id, scope, format, status, progress, "
                    "attempts, created_at) VALUES (%s, %s, %s, 'thread', 'md', 'running', 0, %s, %s) RETURNING id",
                    job_id, api.user["id"], thread["id"], attempts, created)
        server.restart(kill=True)
        retried, given_up = wait_job(api, "a" * 32), wait_job(api, "b" * 32)
        assert retried["status"] == "succeeded" and "Hi." in api.get(retried["download_url"]).text
        assert given_up["status"] == "failed" and "interrupted 2 times" in given_up["error"], given_up
        assert given_up["expires_at"] and given_up["download_url"] is None
        assert db_rows(server, "SELECT attempts FROM export_jobs WHERE id = %s", "a" * 32) == [(2,)]
    finally:
        api.close()


def test_a_failed_export_leaves_no_file_and_expires(server: Server, api: Api) -> None:
    thread = api.thread(title="Broken file")
    api.send(thread["id"], "hello")
    uploaded = upload(api, thread["id"], "scan.pdf", b"%PDF-1.4 not really a pdf")
    assert uploaded.status_code == 201, uploaded.text
    wait_ready(api, uploaded.json()["id"])
    # The original becomes unreadable halfway through the zip (after the JSON and Markdown are in).
    data = Path(server.env["CONVO_DATA_DIR"])
    original = data / "uploads" / str(api.user["id"]) / str(uploaded.json()["id"])
    original.unlink()
    original.symlink_to("/proc/self/mem")  # a regular file whose reads fail

    job = wait_job(api, api.post(f"/api/threads/{thread['id']}/export/jobs", json={"format": "zip"}).json()["job_id"])
    assert job["status"] == "failed" and job["error"], job
    assert job["expires_at"], "a failed job is forgotten after a day too"
    assert files_in(data / "exports" / str(api.user["id"])) == [], "no partial zip is left"
    assert files_in(data / "exports" / "tmp") == []
    assert api.get(f"/api/export/jobs/{job['job_id']}/download").status_code == 404


def test_export_jobs_are_limited_per_user(server: Server, api: Api) -> None:
    thread = api.thread(title="Limits")
    now = datetime.now(UTC)

    def add_jobs(count: int, status: str, age: timedelta) -> None:
        for _ in range(count):
            db_rows(server, "INSERT INTO export_jobs (id, user_id, thread_id, scope, format, status, progress, "
                    "attempts, created_at) VALUES (%s, %s, %s, 'thread', 'md', %s, 0, 1, %s) RETURNING id",
                    uuid.uuid4().hex, api.user["id"], thread["id"], status, db_time(server, now - age))

    start = f"/api/threads/{thread['id']}/export/jobs"
    add_jobs(2, "running", timedelta(minutes=1))
    busy = api.post(start, json={"format": "md"})
    assert busy.status_code == 429 and busy.json()["error"]["code"] == "export_busy", busy.text
    assert 0 < int(busy.headers["retry-after"]) <= 60
    assert api.post("/api/export/jobs", json={"scope": "all", "format": "zip"}).status_code == 429

    db_rows(server, "UPDATE export_jobs SET status = 'succeeded' WHERE user_id = %s RETURNING id", api.user["id"])
    add_jobs(1, "succeeded", timedelta(days=2))  # outside the day's window
    add_jobs(17, "succeeded", timedelta(hours=2))
    assert api.post(start, json={"format": "md"}).status_code == 202  # the 20th of the day
    daily = api.post(start, json={"format": "md"})
    assert daily.status_code == 429 and daily.json()["error"]["code"] == "export_daily_limit", daily.text
    # The oldest of the day's exports leaves the window in 22 hours.
    assert 22 * 3600 - 120 < int(daily.headers["retry-after"]) <= 22 * 3600
    assert daily.json()["error"]["retry_after"] == int(daily.headers["retry-after"])

    other = server.api()
    try:
        mine = other.thread(title="Someone else")
        assert other.post(f"/api/threads/{mine['id']}/export/jobs", json={"format": "md"}).status_code == 202
    finally:
        other.close()


# -- large files: the zip is written to disk as it is made and sent from there --------------------

BIG_FILES = 4
BIG_FILE_BYTES = 24 * 2**20


@pytest.fixture(scope="module")
def big_chat(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Api, int]]:
    """A chat with 96 MB of incompressible attachments, on a server of the module's own (SQLite: the
    database plays no part)."""
    folder = tmp_path_factory.mktemp("big")
    srv = Server(folder, make_env(folder, fake_upstream, None)).start()
    api = srv.api()
    thread = api.thread(title="Scans")
    api.send(thread["id"], "Here are the scans [[fake reply='Thanks.']]")
    for n in range(BIG_FILES):
        # Kept as uploaded though no text comes out of them.
        response = upload(api, thread["id"], f"scan-{n}.pdf", b"%PDF-1.4\n" + os.urandom(BIG_FILE_BYTES))
        assert response.status_code == 201, response.text
        assert wait_ready(api, response.json()["id"])["status"] in ("ready", "failed")
    yield srv, api, thread["id"]
    api.close()
    srv.stop()
    shutil.rmtree(folder / "data", ignore_errors=True)


def memory_kb(pid: int, field: str) -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB$", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert found, field
    return int(found.group(1))


def download_zip(api: Api, thread_id: int, target: Path) -> zipfile.ZipFile:
    with api.http.stream("GET", f"/api/threads/{thread_id}/export", params={"format": "zip"}, headers=api.headers,
                         timeout=120) as response:
        assert response.status_code == 200, response.read()
        with target.open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
    return zipfile.ZipFile(target)


def test_a_zip_of_large_files_does_not_grow_the_servers_memory(big_chat: tuple[Server, Api, int], tmp_path: Path
                                                              ) -> None:
    server, api, thread_id = big_chat
    assert server.process is not None
    pid = server.process.pid
    download_zip(api, thread_id, tmp_path / "warm-up.zip")  # first-use allocations are not the export's
    before = memory_kb(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
    archive = download_zip(api, thread_id, tmp_path / "scans.zip")
    grown = (memory_kb(pid, "VmHWM") - before) * 1024
    total = BIG_FILES * BIG_FILE_BYTES
    assert sum(i.file_size for i in archive.infolist() if i.filename.startswith("attachments/")) > total
    assert grown < total / 4, f"the server's peak memory grew by {grown / 2**20:.0f} MB for a {total / 2**20:.0f} MB zip"
    scratch = Path(server.env["CONVO_DATA_DIR"]) / "exports" / "tmp"
    deadline = time.monotonic() + 10  # deleted just after the last byte left
    while files_in(scratch) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert files_in(scratch) == [], "sent, then deleted"


def test_health_stays_fast_while_a_zip_of_large_files_is_built(big_chat: tuple[Server, Api, int], tmp_path: Path
                                                              ) -> None:
    server, api, thread_id = big_chat
    assert_responsive(server.url, lambda: download_zip(api, thread_id, tmp_path / "scans.zip"))
