"""Uploads on a real server, on SQLite and PostgreSQL: types by content, limits, status, ownership,
deletion of chunks, vectors and originals, hostile files, and ingestion across restarts."""

from __future__ import annotations

import functools
import io
import json
import os
import re
import socket
import sqlite3
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, _fresh_pg_database, make_env
from tests.fakes.upstream import FakeUpstream
from tests.support import Api

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def make_pdf(paragraphs: list[str]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    for paragraph in paragraphs:
        pdf.multi_cell(0, 6, paragraph)
        pdf.ln(4)
    return bytes(pdf.output())


def make_docx(heading: str, paragraphs: list[str]) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading(heading, level=1)
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "cell alpha"
    table.rows[0].cells[1].text = "cell omega"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


@functools.cache
def make_docx_bomb(megabytes: int) -> bytes:
    """A zip that detect() takes for Word, whose word/document.xml is `megabytes` MB of empty paragraphs
    packed about 1,000 to 1, written in pieces."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            part.write(b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>')
            piece = b"<w:p/>" * (1024 * 1024 // 6)
            for _ in range(megabytes):
                part.write(piece)
            part.write(b"</w:body></w:document>")
    return out.getvalue()


@functools.cache
def make_long_pdf(pages: int) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.text(20, 20, f"Page {number} of the harbour log.")
    return bytes(pdf.output())


def upload(api: Api, thread_id: int, name: str, data: bytes, mime: str = "application/octet-stream") -> Any:
    return api.post(f"/api/threads/{thread_id}/attachments", files={"file": (name, data, mime)})


def wait_ready(api: Api, attachment_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = api.get(f"/api/attachments/{attachment_id}").json()
        if body["status"] in ("ready", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def attach(api: Api, thread_id: int, name: str, data: bytes) -> dict[str, Any]:
    response = upload(api, thread_id, name, data)
    assert response.status_code == 201, response.text
    body = wait_ready(api, response.json()["id"])
    assert body["status"] == "ready", body
    return body


def db_execute(server: Server, sql: str, *params: Any) -> None:
    """Change the server's database directly (with it stopped), to set up what only a crash leaves."""
    url = server.env.get("DATABASE_URL")
    if url is None:
        with sqlite3.connect(Path(server.env["CONVO_DATA_DIR"]) / "convo.db") as conn:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(sql.replace("%s", "?"), params)
        return
    import psycopg

    with psycopg.connect(url.replace("postgresql+asyncpg://", "postgresql://")) as conn:
        conn.execute(sql, params)


def db_rows(server: Server, sql: str, *params: Any) -> list[tuple]:
    """Read the server's database directly, to check what an API cannot show (vectors, terms)."""
    url = server.env.get("DATABASE_URL")
    if url is None:
        with sqlite3.connect(Path(server.env["CONVO_DATA_DIR"]) / "convo.db") as conn:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()
    import psycopg

    with psycopg.connect(url.replace("postgresql+asyncpg://", "postgresql://")) as conn:
        return conn.execute(sql, params).fetchall()


EXAMPLES = {
    "notes.txt": ("text/plain", b"The lighthouse keeper logs every passing ship.\n\nSecond paragraph here."),
    "guide.md": ("text/markdown", b"# Setup\n\nInstall the lighthouse lamp first.\n\n## Use\n\nTurn it on at dusk."),
    "page.html": ("text/html", b"<!doctype html><html><head><title>t</title><script>var zebrawhisper=1"
                  b"</script></head><body><h1>Harbour</h1><p>The lighthouse stands on the pier.</p></body></html>"),
    "ships.csv": ("text/csv", b"name,port\nAurora,Lisbon\nBorealis,Porto\n"),
    "config.json": ("application/json", json.dumps({"lighthouse": {"height_m": 42, "lamp": "LED"}}).encode()),
    "beam.py": ("text/x-python", b"def beam(angle):\n    \"\"\"Rotate the lighthouse beam.\"\"\"\n    return angle % 360\n"),
}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_text_types_are_detected_extracted_and_indexed(api: Api, name: str) -> None:
    content_type, data = EXAMPLES[name]
    thread = api.thread()
    response = upload(api, thread["id"], name, data)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] in ("queued", "processing", "ready")
    assert created["filename"] == name and created["size"] == len(data) and created["content_type"] == content_type
    ready = wait_ready(api, created["id"])
    assert ready["status"] == "ready" and ready["chunk_count"] >= 1 and ready["error"] is None
    original = api.get(f"/api/attachments/{created['id']}/content")
    assert original.status_code == 200 and original.content == data
    assert original.headers["content-disposition"].startswith("attachment")


def test_pdf_and_docx_text_is_searchable(api: Api) -> None:
    thread = api.thread()
    pdf = attach(api, thread["id"], "report.pdf", make_pdf(["Quarterly figures for the glassworks.",
                                                            "Kiln temperature reached 1400 degrees."]))
    assert pdf["content_type"] == "application/pdf"
    doc = attach(api, thread["id"], "memo.docx", make_docx("Orchard plan", ["Plant the quince trees in March."]))
    assert doc["content_type"].endswith("wordprocessingml.document")
    hits = api.post("/api/rag/search", json={"q": "kiln temperature", "thread_id": thread["id"], "mode": "bm25"}).json()
    assert hits["items"][0]["attachment_id"] == pdf["id"] and "1400" in hits["items"][0]["text"]
    hits = api.post("/api/rag/search", json={"q": "quince trees", "thread_id": thread["id"]}).json()
    top = hits["items"][0]
    assert top["attachment_id"] == doc["id"]
    assert "# Orchard plan" in top["text"]  # the Word heading became a heading
    table = api.post("/api/rag/search", json={"q": "omega", "thread_id": thread["id"], "mode": "bm25"}).json()
    assert table["items"][0]["attachment_id"] == doc["id"]


def test_script_text_of_html_is_not_indexed(api: Api) -> None:
    thread = api.thread()
    attach(api, thread["id"], "page.html", EXAMPLES["page.html"][1])
    hits = api.post("/api/rag/search", json={"q": "zebrawhisper", "thread_id": thread["id"], "mode": "bm25"})
    assert hits.json()["items"] == []


@pytest.mark.parametrize(("name", "data"), [
    ("picture.png", PNG),
    ("disguised.txt", PNG),  # the name says text, the bytes say image
    ("archive.zip", b"PK\x03\x04" + b"\x00" * 40),
    ("program.bin", b"\x7fELF\x02\x01\x01" + b"\x00" * 40),
    ("latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1") + b"\x00\x01"),
])
def test_unsupported_content_is_415_whatever_the_name(api: Api, name: str, data: bytes) -> None:
    thread = api.thread()
    response = upload(api, thread["id"], name, data)
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert api.get(f"/api/threads/{thread['id']}/attachments").json()["items"] == []


def test_a_pdf_named_txt_is_read_as_pdf(api: Api) -> None:
    thread = api.thread()
    body = attach(api, thread["id"], "actually.txt", make_pdf(["Barometric pressure dropped sharply."]))
    assert body["content_type"] == "application/pdf"


def test_bad_uploads_are_clear_4xx(api: Api) -> None:
    thread = api.thread()
    assert upload(api, thread["id"], "empty.txt", b"").status_code == 422
    invalid = upload(api, thread["id"], "broken.json", b"{not json")
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "invalid_json"
    no_file = api.post(f"/api/threads/{thread['id']}/attachments", files={"other": ("a.txt", b"x")})
    assert no_file.status_code == 422 and no_file.json()["error"]["code"] == "missing_file"
    not_multipart = api.post(f"/api/threads/{thread['id']}/attachments", json={"file": "x"})
    assert not_multipart.status_code == 415


def test_a_file_over_the_limit_is_413(api: Api) -> None:
    thread = api.thread()
    big = b"a" * (25 * 1024 * 1024 + 1)
    response = upload(api, thread["id"], "big.txt", big)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "file_too_large"
    assert api.get(f"/api/threads/{thread['id']}/attachments").json()["items"] == []


def test_a_pdf_without_text_fails_with_a_readable_error(api: Api) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)  # a drawing, no text
    thread = api.thread()
    response = upload(api, thread["id"], "scan.pdf", bytes(pdf.output()))
    assert response.status_code == 201
    body = wait_ready(api, response.json()["id"])
    assert body["status"] == "failed" and "no text layer" in body["error"]
    assert body["chunk_count"] == 0


def test_other_users_files_are_404_like_missing_ones(server: Server, api: Api) -> None:
    thread = api.thread()
    mine = attach(api, thread["id"], "notes.txt", b"Private harbour schedule for the ferry.")
    other = server.api()
    try:
        for path in (f"/api/attachments/{mine['id']}", f"/api/attachments/{mine['id']}/content",
                     f"/api/threads/{thread['id']}/attachments", "/api/attachments/999999999"):
            response = other.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
        assert upload(other, thread["id"], "x.txt", b"intruder").status_code == 404
        assert other.delete(f"/api/attachments/{mine['id']}").status_code == 404
        search = other.post("/api/rag/search", json={"q": "harbour schedule", "thread_id": thread["id"]})
        assert search.status_code == 404
        named = other.post("/api/rag/search", json={"q": "harbour schedule", "attachment_ids": [mine["id"]]})
        assert named.status_code == 404
        assert other.post("/api/rag/search", json={"q": "harbour schedule ferry"}).json()["items"] == []
        # Still there for its owner.
        assert api.get(f"/api/attachments/{mine['id']}").json()["status"] == "ready"
    finally:
        other.close()


def test_listing_a_threads_attachments(api: Api) -> None:
    thread = api.thread()
    a = attach(api, thread["id"], "a.txt", b"alpha text")
    b = attach(api, thread["id"], "b.md", b"# Beta\n\nbeta text")
    items = api.get(f"/api/threads/{thread['id']}/attachments").json()["items"]
    assert [i["id"] for i in items] == [a["id"], b["id"]]


def test_deleting_an_attachment_removes_chunks_vectors_and_file(server: Server, api: Api) -> None:
    thread = api.thread()
    body = attach(api, thread["id"], "tides.txt", b"Spring tides at the estuary peak twice a month.")
    chunk_ids = [r[0] for r in db_rows(server, "SELECT id FROM chunks WHERE attachment_id = %s", body["id"])]
    assert len(chunk_ids) == body["chunk_count"] >= 1
    stored = Path(server.env["CONVO_DATA_DIR"]) / "uploads" / str(api.user["id"]) / str(body["id"])
    assert stored.is_file()

    def keyword_rows() -> int:
        if server.env.get("DATABASE_URL"):
            return db_rows(server, "SELECT count(*) FROM chunk_terms WHERE chunk_id = ANY(%s)", chunk_ids)[0][0]
        marks = ",".join("?" * len(chunk_ids))
        return db_rows(server, f"SELECT count(*) FROM chunk_terms WHERE chunk_id IN ({marks})", *chunk_ids)[0][0]

    assert keyword_rows() > 0
    assert api.delete(f"/api/attachments/{body['id']}").status_code == 204
    assert api.get(f"/api/attachments/{body['id']}").status_code == 404
    assert not stored.exists()
    assert db_rows(server, "SELECT count(*) FROM chunks WHERE attachment_id = %s", body["id"]) == [(0,)]
    assert db_rows(server, "SELECT count(*) FROM chunk_vectors WHERE attachment_id = %s", body["id"]) == [(0,)]
    assert keyword_rows() == 0
    hits = api.post("/api/rag/search", json={"q": "spring tides estuary"}).json()["items"]
    assert all(h["attachment_id"] != body["id"] for h in hits)


def test_deleting_the_thread_removes_its_files(server: Server, api: Api) -> None:
    thread = api.thread()
    body = attach(api, thread["id"], "moor.txt", b"Mooring lines must be doubled in a gale.")
    stored = Path(server.env["CONVO_DATA_DIR"]) / "uploads" / str(api.user["id"]) / str(body["id"])
    assert stored.is_file()
    assert api.delete(f"/api/threads/{thread['id']}").status_code == 204
    assert api.get(f"/api/attachments/{body['id']}").status_code == 404
    assert not stored.exists()
    assert db_rows(server, "SELECT count(*) FROM chunk_vectors WHERE attachment_id = %s", body["id"]) == [(0,)]
    assert db_rows(server, "SELECT count(*) FROM chunks WHERE attachment_id = %s", body["id"]) == [(0,)]


def fails_and_server_stays_up(server: Server, api: Api, name: str, data: bytes) -> str:
    """Upload a hostile file: it must end `failed`, and the server must go on indexing other files."""
    thread = api.thread()
    response = upload(api, thread["id"], name, data)
    assert response.status_code == 201, response.text
    body = wait_ready(api, response.json()["id"])
    assert body["status"] == "failed" and body["chunk_count"] == 0, body
    assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200
    attach(api, thread["id"], "after.txt", b"The harbour master signs the log at noon.")
    return body["error"]


def test_a_csv_whose_header_repeats_on_every_row_fails_at_the_text_budget(server: Server, api: Api) -> None:
    bomb = b"h" * 100_000 + b"\n" + b"x\n" * 200_000  # 500 KB that used to become 20 GB of text
    error = fails_and_server_stays_up(server, api, "bomb.csv", bomb)
    assert "more than 5,000,000 characters" in error


def test_a_json_whose_key_repeats_on_every_line_fails_at_the_text_budget(server: Server, api: Api) -> None:
    bomb = json.dumps({"k" * 100_000: [0] * 200_000}).encode()
    error = fails_and_server_stays_up(server, api, "bomb.json", bomb)
    assert "more than 5,000,000 characters" in error


def test_deep_json_is_a_clear_422_not_a_crash(api: Api) -> None:
    thread = api.thread()
    deep = b"[" * 100_000 + b"]" * 100_000
    response = upload(api, thread["id"], "deep.json", deep)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    assert "nested too deeply" in response.json()["error"]["message"]
    # Named as text it is text, brackets and all.
    assert attach(api, thread["id"], "deep.txt", deep)["content_type"] == "text/plain"


def test_a_docx_zip_bomb_fails_before_it_is_unpacked(server: Server, api: Api) -> None:
    error = fails_and_server_stays_up(server, api, "bomb.docx", make_docx_bomb(200))
    assert "unpacks to 200 MB" in error and "at most 50 MB" in error


def test_a_pdf_over_the_page_cap_fails(server: Server, api: Api) -> None:
    error = fails_and_server_stays_up(server, api, "log.pdf", make_long_pdf(2001))
    assert "2,001 pages" in error and "at most 2,000" in error


def test_at_restart_a_file_that_keeps_stopping_indexing_fails_and_others_are_indexed_again(own_server: Server
                                                                                           ) -> None:
    api = own_server.api()
    thread = api.thread()
    stuck = attach(api, thread["id"], "stuck.txt", b"Ballast water is pumped out at the quay.")
    resumed = attach(api, thread["id"], "resumed.txt", b"Pilots board the ship at the outer buoy.")
    assert db_rows(own_server, "SELECT attempts FROM attachments WHERE id = %s", resumed["id"]) == [(1,)]
    own_server.stop(kill=True)
    # What a server killed while reading them leaves: both half done, one of them for the third time.
    for attachment, attempts in ((stuck, 3), (resumed, 1)):
        db_execute(own_server, "DELETE FROM chunks WHERE attachment_id = %s", attachment["id"])
        db_execute(own_server, "UPDATE attachments SET status = 'processing', chunk_count = 0, attempts = %s "
                   "WHERE id = %s", attempts, attachment["id"])
    own_server.start()
    failed = wait_ready(api, stuck["id"])
    assert failed["status"] == "failed" and "Indexing stopped 3 times" in failed["error"], failed
    again = wait_ready(api, resumed["id"])
    assert again["status"] == "ready" and again["chunk_count"] >= 1, again
    assert db_rows(own_server, "SELECT attempts FROM attachments WHERE id = %s", resumed["id"]) == [(2,)]
    hits = api.post("/api/rag/search", json={"q": "outer buoy", "thread_id": thread["id"], "mode": "bm25"}).json()
    assert [h["attachment_id"] for h in hits["items"]] == [resumed["id"]]
    api.close()


# -- limits while the body streams in ------------------------------------------------------------

BOUNDARY = "convo-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart_head(name: str) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode()


def chunked_body(name: str, size: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    """A multipart body with `size` bytes of text in its file part, sent in pieces without a length."""
    yield multipart_head(name)
    for start in range(0, size, piece):
        yield b"a" * min(piece, size - start)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def start_chunked_upload(server: Server, api: Api, path: str, body: bytes) -> socket.socket:
    """A chunked upload whose body is `body` so far: the request is left open, as a slow or endless
    sender leaves it."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {api.token}\r\nContent-Type: {MULTIPART}\r\nTransfer-Encoding: chunked\r\n\r\n")
    sock.sendall(head.encode() + f"{len(body):x}\r\n".encode() + body + b"\r\n")
    return sock


def status_of(sock: socket.socket) -> int:
    """The status of the response on `sock`; a timeout if none comes (the server waits for the body)."""
    received = b""
    while b"\r\n" not in received:
        piece = sock.recv(4096)
        assert piece, f"connection closed after {received!r}"
        received += piece
    return int(received.split(b" ", 2)[1])


def bytes_written(pid: int) -> int:
    """What the process has written to files so far (Linux: its write(2) calls, wherever they go)."""
    return int(re.search(r"^wchar: (\d+)$", Path(f"/proc/{pid}/io").read_text(), re.M)[1])


@pytest.fixture
def small_server(fake_upstream: FakeUpstream, tmp_path: Path) -> Iterator[Server]:
    """A server (SQLite: the database plays no part) whose uploads may be 1 MB, with a temp folder of
    its own."""
    (tmp_path / "tmp").mkdir()
    srv = Server(tmp_path, make_env(tmp_path, fake_upstream, None, CONVO_MAX_UPLOAD_MB="1",
                                    TMPDIR=str(tmp_path / "tmp"))).start()
    yield srv
    srv.stop()


def test_a_chunked_upload_over_the_limit_is_refused_while_it_streams(small_server: Server) -> None:
    limit = 1024 * 1024
    api = small_server.api()
    thread = api.thread()
    assert small_server.process is not None
    pid = small_server.process.pid
    written = bytes_written(pid)
    response = api.post(f"/api/threads/{thread['id']}/attachments", headers={"Content-Type": MULTIPART},
                        content=chunked_body("big.txt", 3 * limit))
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "file_too_large"
    # No more than the limit and its framing was kept anywhere, temp folder or data folder (a whole
    # body spooled first would be 3 MB).
    assert bytes_written(pid) - written < limit + 256 * 1024
    leftovers = [p for folder in ("tmp", "data/uploads") for p in (small_server.folder / folder).rglob("*")
                 if p.is_file()]
    assert leftovers == []
    # The refusal comes once the limit is passed, not at the end of a body that may never end.
    sock = start_chunked_upload(small_server, api, f"/api/threads/{thread['id']}/attachments",
                                multipart_head("endless.txt") + b"a" * (limit + 128 * 1024))
    try:
        assert status_of(sock) == 413
    finally:
        sock.close()
    # Under the limit, the same kind of request is taken.
    ok = api.post(f"/api/threads/{thread['id']}/attachments", headers={"Content-Type": MULTIPART},
                  content=chunked_body("small.txt", limit // 2))
    assert ok.status_code == 201, ok.text
    assert ok.json()["size"] == limit // 2
    api.close()


def test_an_upload_to_someone_elses_thread_is_refused_before_its_body_is_read(server: Server, api: Api) -> None:
    thread = api.thread()
    other = server.api()
    try:
        for thread_id in (thread["id"], 2_000_000_000):
            # One piece of a body that never ends: the answer cannot wait for the rest.
            sock = start_chunked_upload(server, other, f"/api/threads/{thread_id}/attachments",
                                        multipart_head("x.txt") + b"a" * 65536)
            try:
                assert status_of(sock) == 404
            finally:
                sock.close()
    finally:
        other.close()


def test_a_chunked_import_over_its_limit_is_refused_while_it_streams(small_server: Server) -> None:
    limit = 8 * 1024 * 1024  # eight uploads
    api = small_server.api()
    assert small_server.process is not None
    written = bytes_written(small_server.process.pid)
    sock = start_chunked_upload(small_server, api, "/api/import",
                                multipart_head("history.json") + b"a" * (limit + 128 * 1024))
    try:
        assert status_of(sock) == 413
    finally:
        sock.close()
    assert bytes_written(small_server.process.pid) - written < limit + 256 * 1024
    api.close()


# -- storage quota -------------------------------------------------------------------------------

QUOTA_BYTES = 10_485  # CONVO_USER_STORAGE_MB=0.01


@pytest.fixture
def quota_server(backend_url: str | None, fake_upstream: FakeUpstream, tmp_path: Path) -> Iterator[Server]:
    url = _fresh_pg_database(backend_url, f"convo_quota_{os.getpid()}") if backend_url else None
    srv = Server(tmp_path, make_env(tmp_path, fake_upstream, url, CONVO_USER_STORAGE_MB="0.01"))
    if url:
        assert srv.convo("migrate").returncode == 0
    srv.start()
    yield srv
    srv.stop()


def test_uploads_past_the_users_storage_quota_are_413(quota_server: Server) -> None:
    api, other = quota_server.api(), quota_server.api()
    thread = api.thread()
    first = upload(api, thread["id"], "a.txt", b"a" * 6000)
    assert first.status_code == 201, first.text
    refused = upload(api, thread["id"], "b.txt", b"b" * 6000)
    assert refused.status_code == 413, refused.text
    error = refused.json()["error"]
    assert error["code"] == "storage_quota_exceeded"
    assert error["used_bytes"] == 6000 and error["limit_bytes"] == QUOTA_BYTES
    assert "5.9 KB" in error["message"] and "10.2 KB" in error["message"]
    assert [a["id"] for a in api.get(f"/api/threads/{thread['id']}/attachments").json()["items"]] == [
        first.json()["id"]]
    assert list((Path(quota_server.env["CONVO_DATA_DIR"]) / "uploads" / str(api.user["id"])).iterdir()) == [
        Path(quota_server.env["CONVO_DATA_DIR"]) / "uploads" / str(api.user["id"]) / str(first.json()["id"])]
    # Each user has a quota of their own, and deleting a file makes room.
    assert upload(other, other.thread()["id"], "b.txt", b"b" * 6000).status_code == 201
    assert api.delete(f"/api/attachments/{first.json()['id']}").status_code == 204
    assert upload(api, thread["id"], "b.txt", b"b" * 6000).status_code == 201
    api.close()
    other.close()

