"""Behaviours the test audit found untested (shared/design/test-audit.md): what a user sees when an answer
is replayed from the database, when Anthropic fails, after switching versions, when an account is
disabled or its session expires, and what /readyz says when the database is gone."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.api.test_files import attach, db_execute
from tests.api.test_stream import answer_id, wait_for
from tests.conftest import Server, _drop_pg_database, _fresh_pg_database, make_env
from tests.support import Api


@pytest.fixture
def forgetful_server(backend_url, fake_upstream, tmp_path):
    """Finished answers' live logs are dropped at once: every late reader replays from the database."""
    url = _fresh_pg_database(backend_url, f"convo_forget_{os.getpid()}") if backend_url else None
    server = Server(tmp_path, make_env(tmp_path, fake_upstream, url, CONVO_STREAM_RETENTION_SECONDS="0"))
    if url:
        assert server.convo("migrate").returncode == 0
    yield server.start()
    server.stop()


def test_citations_and_errors_replay_from_the_database_as_they_streamed(forgetful_server: Server) -> None:
    api = forgetful_server.api()
    thread = api.thread()
    attach(api, thread["id"], "manual.txt", b"Pump model QX-77 needs its impeller replaced every 3,000 hours.")
    live = api.send(thread["id"], "How often for the QX-77? [[fake reply='Every 3,000 hours [1].']]")
    wait_for(lambda: api.follow(answer_id(live), after=0).events[-1].event == "done")
    replay = api.follow(answer_id(live), after=0)
    assert [e.event for e in replay.events][:2] == ["start", "citations"]
    assert replay.of("citations")[0].data == live.of("citations")[0].data
    assert replay.text == live.text and replay.last.id == live.last.id
    assert replay.last.data["message"]["meta"]["citations"] == live.last.data["message"]["meta"]["citations"]

    failed = api.send(thread["id"], "[[fake tokens=10 fail=break after=3]]")
    assert failed.last.event == "error"
    again = api.follow(answer_id(failed), after=0)
    assert again.last.event == "error" and again.last.data == failed.last.data
    assert again.last.id == failed.last.id and again.text == failed.text


@pytest.mark.parametrize(("directive", "code"), [
    ("[[fake fail=http_401]]", "upstream_auth"),
    ("[[fake fail=http_429]]", "upstream_rate_limited"),
    ("[[fake fail=http_500]]", "upstream_error"),
    ("[[fake tokens=10 fail=break after=3]]", "upstream_stream_broken"),
    ("[[fake tokens=10 fail=garbage after=2]]", "upstream_protocol_error"),
])
def test_anthropic_failures_end_in_a_clear_error_and_keep_the_text(api: Api, directive: str, code: str) -> None:
    thread = api.thread(model="claude-fake")
    stream = api.send(thread["id"], directive)
    assert stream.last.event == "error", stream.events
    error = stream.last.data
    assert error["code"].startswith("upstream_") and error["message"]
    if code in ("upstream_auth", "upstream_stream_broken", "upstream_protocol_error"):
        assert error["code"] == code, error
    stored = api.get(f"/api/threads/{thread['id']}").json()["messages"][-1]
    assert stored["status"] == "error" and stored["meta"]["error"]["code"] == error["code"]
    assert stored["content"] == stream.text
    if stream.text:  # (an empty failed turn is merged with the next question, as Anthropic wants turns to alternate)
        assert api.send(thread["id"], "fine now?").last.event == "done", "the chat goes on"


def test_a_message_sent_after_switching_versions_continues_the_branch_on_screen(api: Api, fake_upstream) -> None:
    thread = api.thread()
    first = api.send(thread["id"], "apples").events[0].data["user_message"]
    api.send(thread["id"], "more about apples")
    edited = api.stream("POST", f"/api/convo/messages/{first['id']}/edit", json={"content": "pears"})
    assert edited.last.event == "done"
    switched = api.post(f"/api/threads/{thread['id']}/switch", json={"message_id": first["id"]}).json()
    assert switched["messages"][0]["content"] == "apples"
    follow_up = api.send(thread["id"], "and their seeds?")
    sent = [m["content"] for m in fake_upstream.requests[-1]["messages"] if m["role"] == "user"]
    assert sent == ["apples", "more about apples", "and their seeds?"], "the branch on screen, not the newest"
    view = api.get(f"/api/threads/{thread['id']}").json()
    assert view["current_leaf_id"] == follow_up.last.data["message"]["id"]
    assert [m["content"] for m in view["messages"] if m["role"] == "user"] == sent


def test_a_disabled_account_and_an_expired_session_are_turned_away(admin: Api, server: Server) -> None:
    user = server.api()
    second = Api(server.url)
    login = second.http.post("/api/auth/login", json={"email": user.user["email"], "password": "correct horse battery"})
    assert login.status_code == 200
    second.token = login.json()["token"]
    assert admin.patch(f"/api/admin/users/{user.user['id']}", json={"disabled": True}).status_code == 200
    for client in (user, second):
        assert client.get("/api/threads").status_code == 401
    refused = httpx.post(server.url + "/api/auth/login",
                         json={"email": user.user["email"], "password": "correct horse battery"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "account_disabled"
    assert admin.patch(f"/api/admin/users/{user.user['id']}", json={"disabled": False}).status_code == 200
    again = httpx.post(server.url + "/api/auth/login",
                       json={"email": user.user["email"], "password": "correct horse battery"})
    assert again.status_code == 200

    # A session past its expiry answers 401 session_expired, and the web app asks to log in again.
    token = again.json()["token"]
    import hashlib

    db_execute(server, "UPDATE auth_tokens SET expires_at = %s WHERE token_hash = %s",
               datetime.now(UTC) - timedelta(minutes=1), hashlib.sha256(token.encode()).hexdigest())
    expired = httpx.get(server.url + "/api/threads", headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "session_expired"


def test_readyz_says_so_when_the_database_is_gone(backend_url, fake_upstream, tmp_path) -> None:
    if backend_url is None:
        pytest.skip("PostgreSQL: a database that can be taken away under a running server")
    url = _fresh_pg_database(backend_url, f"convo_ready_{os.getpid()}")
    server = Server(tmp_path, make_env(tmp_path, fake_upstream, url))
    assert server.convo("migrate").returncode == 0
    server.start()
    try:
        assert httpx.get(server.url + "/readyz").status_code == 200
        _drop_pg_database(backend_url, f"convo_ready_{os.getpid()}")
        down = httpx.get(server.url + "/readyz")
        assert down.status_code == 503 and down.json()["error"]["code"] == "not_ready"
        assert "database" in down.json()["error"]["message"]
        assert httpx.get(server.url + "/healthz").status_code == 200, "the process itself is still up"
    finally:
        server.stop()


def test_an_answer_whose_final_write_fails_still_ends_with_an_event(backend_url, fake_upstream, tmp_path) -> None:
    """Security review L4: followers got a silent end (and the web app replayed from 0 in a loop)."""
    if backend_url is None:
        pytest.skip("PostgreSQL: a constraint makes the final write fail while the server runs")
    from tests.api.test_files import db_execute

    url = _fresh_pg_database(backend_url, f"convo_final_{os.getpid()}")
    server = Server(tmp_path, make_env(tmp_path, fake_upstream, url))
    assert server.convo("migrate").returncode == 0
    server.start()
    try:
        api = server.api()
        thread = api.thread()
        db_execute(server, "ALTER TABLE messages ADD CONSTRAINT no_finished_answers "
                           "CHECK (role <> 'assistant' OR status = 'streaming') NOT VALID")
        stream = api.send(thread["id"], "hello")
        assert stream.last.event == "error" and stream.last.data["code"] == "internal_error", stream.events[-2:]
        assert "could not be saved" in stream.last.data["message"]
    finally:
        server.stop()
        _drop_pg_database(backend_url, f"convo_final_{os.getpid()}")


def test_a_session_left_unused_for_a_week_ends(server: Server) -> None:
    """Security review L3: sessions lived their 30 days whether used or not."""
    import hashlib

    from tests.api.test_files import db_rows

    user = server.api()
    digest = hashlib.sha256(user.token.encode()).hexdigest()
    assert user.get("/api/threads").status_code == 200
    # Used an hour and a half ago: still good, and the use is recorded.
    db_execute(server, "UPDATE auth_tokens SET created_at = %s, last_used_at = %s WHERE token_hash = %s",
               datetime.now(UTC) - timedelta(days=20), datetime.now(UTC) - timedelta(minutes=90), digest)
    assert user.get("/api/threads").status_code == 200
    seen = db_rows(server, "SELECT last_used_at FROM auth_tokens WHERE token_hash = %s", digest)[0][0]
    seen = datetime.fromisoformat(seen) if isinstance(seen, str) else seen
    assert (seen if seen.tzinfo else seen.replace(tzinfo=UTC)) > datetime.now(UTC) - timedelta(minutes=5)
    # Unused for eight days (CONVO_SESSION_IDLE_DAYS is 7): gone, though its 30 days are not over.
    db_execute(server, "UPDATE auth_tokens SET last_used_at = %s WHERE token_hash = %s",
               datetime.now(UTC) - timedelta(days=8), digest)
    expired = user.get("/api/threads")
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "session_expired"
    assert db_rows(server, "SELECT id FROM auth_tokens WHERE token_hash = %s", digest) == []
