"""Daily budgets on a real server, on SQLite and PostgreSQL: what is spent and reserved, refusals before
an answer starts, no overspending under concurrent requests, and the admin endpoints that set them."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Server
from tests.support import Api

# fake-gpt in the test providers file: $2 per million prompt tokens, $8 per million answer tokens.
OUTPUT_USD_PER_TOKEN = 8.0 / 1_000_000


def set_budget(admin: Api, user_id: int, usd: float | None) -> None:
    response = admin.patch(f"/api/admin/users/{user_id}", json={"daily_budget_usd": usd})
    assert response.status_code == 200, response.text
    assert response.json()["daily_budget_usd"] == usd


def budget(api: Api) -> dict[str, Any]:
    response = api.get("/api/budget")
    assert response.status_code == 200, response.text
    return response.json()


def rejected_so_far(api: Api) -> float:
    metrics = api.get("/metrics").text
    return float(re.search(r"^convo_budget_rejections_total (\S+)$", metrics, re.M).group(1))


def test_spending_is_counted_and_an_answer_that_could_overrun_is_refused_before_it_starts(
    admin: Api, api: Api
) -> None:
    assert budget(api)["limit_usd"] is None and budget(api)["remaining_usd"] is None  # no budget by default
    set_budget(admin, api.user['id'], 0.02)
    thread = api.thread(model="fake-gpt")
    stream = api.send(thread["id"], "hello there", max_tokens=1000)
    assert stream.last.event == "done", stream.events
    cost = stream.of("usage")[0].data["cost_usd"]
    assert cost > 0
    status = budget(api)
    assert status["limit_usd"] == 0.02 and status["spent_usd"] == pytest.approx(cost)
    assert status["reserved_usd"] == 0 and status["remaining_usd"] == pytest.approx(0.02 - cost)
    assert status["resets_at"].startswith(("20", "21")) and "T00:00:00" in status["resets_at"]

    # 5,000 answer tokens could cost $0.04: refused with what is left, and nothing is written.
    before = api.get(f"/api/threads/{thread['id']}").json()
    rejections = rejected_so_far(api)
    refused = api.post(f"/api/threads/{thread['id']}/messages", json={"content": "a long essay", "max_tokens": 5000})
    assert refused.status_code == 402, refused.text
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded" and error["remaining_usd"] == pytest.approx(0.02 - cost)
    assert error["resets_at"] == status["resets_at"]
    assert api.get(f"/api/threads/{thread['id']}").json() == before
    assert rejected_so_far(api) == rejections + 1
    # Without a length of its own, a budgeted answer is capped at 4,096 tokens: $0.033 could overrun too.
    assert api.post(f"/api/threads/{thread['id']}/messages", json={"content": "go on"}).status_code == 402
    # A short answer still fits, and a model without prices is never refused (this one is unreachable).
    assert api.send(thread["id"], "briefly", max_tokens=500).last.event == "done"
    free = api.send(thread["id"], "hi", model="dead-model")
    assert free.last.event == "error" and free.last.data["code"] == "upstream_unreachable"

    set_budget(admin, api.user['id'], None)  # back to the server's default: none
    assert api.send(thread["id"], "a long essay", max_tokens=5000).last.event == "done"


def test_concurrent_answers_cannot_spend_the_same_dollar_twice(admin: Api, server: Server) -> None:
    user = server.api()
    try:
        # Each answer may write 2,000 tokens (about $0.016 with its prompt): three fit in $0.05, not four.
        set_budget(admin, user.user['id'], 0.05)
        # Eight chats, as eight tabs would have (one chat writes one answer at a time).
        threads = [user.thread(model="fake-gpt") for _ in range(8)]
        outcomes: list[int] = []
        lock = threading.Lock()

        def ask(n: int) -> None:
            client = Api(server.url, token=user.token)
            try:
                # Long answers, read no further than their status: all eight ask while the first still run.
                with client.http.stream("POST", f"/api/threads/{threads[n]['id']}/messages", headers=client.headers,
                                        json={"content": f"q{n} [[fake tokens=200 interval=0.05]]",
                                              "max_tokens": 2000}) as response:
                    with lock:
                        outcomes.append(response.status_code)
            finally:
                client.close()

        workers = [threading.Thread(target=ask, args=(n,)) for n in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert sorted(outcomes) == [200, 200, 200, 402, 402, 402, 402, 402], outcomes
        status = budget(user)
        assert status["spent_usd"] + status["reserved_usd"] <= 0.05
        for thread in threads:
            for message in user.get(f"/api/threads/{thread['id']}").json()["messages"]:
                if message["status"] == "streaming":
                    user.post(f"/api/convo/messages/{message['id']}/cancel")
    finally:
        user.close()


def test_admin_endpoints_are_for_admins_and_keep_one_admin(admin: Api, api: Api, server: Server) -> None:
    assert api.get("/api/admin/users").status_code == 403
    assert api.patch(f"/api/admin/users/{admin.user['id']}", json={"disabled": True}).status_code == 403
    listed = admin.get("/api/admin/users").json()["items"]
    assert {u["email"] for u in listed} >= {api.user["email"], admin.user["email"]}

    me = admin.user["id"]
    assert admin.patch(f"/api/admin/users/{me}", json={"disabled": True}).status_code == 409
    assert admin.patch(f"/api/admin/users/{me}", json={"role": "user"}).status_code == 409
    assert admin.patch("/api/admin/users/2147483647", json={"role": "user"}).status_code == 404
    for bad in ({"daily_budget_usd": -1}, {"role": "owner"}, {"nickname": "x"}):
        assert admin.patch(f"/api/admin/users/{api.user['id']}", json=bad).status_code == 422, bad

    victim = server.api()
    try:
        assert victim.get("/api/budget").status_code == 200
        changed = admin.patch(f"/api/admin/users/{victim.user['id']}", json={"disabled": True})
        assert changed.status_code == 200 and changed.json()["disabled"] is True
        assert victim.get("/api/budget").status_code == 401  # signed out at once
    finally:
        victim.close()


def test_deleting_chats_gives_no_spending_back(admin: Api, server: Server) -> None:
    user = server.api()
    try:
        set_budget(admin, user.user["id"], 1.0)
        thread = user.thread(model="fake-gpt")
        cost = user.send(thread["id"], "hello [[fake usage=1000,2000]]").of("usage")[0].data["cost_usd"]
        assert cost == pytest.approx((1000 * 2 + 2000 * 8) / 1_000_000)
        # A chat deleted while its answer is being written is charged for it all the same.
        busy = user.thread(model="fake-gpt")
        streaming = user.send(busy["id"], "[[fake tokens=40 interval=0.05 usage=500,40]]", stop_after=3)
        assert user.delete(f"/api/threads/{busy['id']}").status_code == 204
        assert user.delete(f"/api/threads/{thread['id']}").status_code == 204
        # Cancelled by the delete: charged for the prompt and the words it had written.
        deadline = time.monotonic() + 20
        while budget(user)["reserved_usd"] and time.monotonic() < deadline:
            time.sleep(0.1)
        status = budget(user)
        assert streaming.events[0].event == "start"
        assert status["reserved_usd"] == 0 and cost < status["spent_usd"] < cost + (500 * 2 + 40 * 8) / 1_000_000
        assert status["remaining_usd"] == pytest.approx(1.0 - status["spent_usd"])
    finally:
        user.close()


def test_an_import_cannot_write_spending(admin: Api, server: Server) -> None:
    """Neither a negative cost nor a turn dated today or in the future changes what a day has cost."""
    user = server.api()
    try:
        set_budget(admin, user.user["id"], 0.01)
        thread = user.thread(model="fake-gpt")
        spent = user.send(thread["id"], "hi [[fake usage=100,100]]", max_tokens=100).of("usage")[0].data["cost_usd"]
        now = datetime.now(UTC)
        export = {
            "format": "convo.thread", "version": 1,
            "thread": {"title": "forged", "created_at": now.isoformat(), "current_leaf_id": 2},
            "messages": [
                {"id": 1, "parent_id": None, "role": "user", "content": "q", "created_at": now.isoformat()},
                {"id": 2, "parent_id": 1, "role": "assistant", "content": "a", "status": "complete",
                 "created_at": now.isoformat(), "meta": {"cost_usd": -1000000}},
                {"id": 3, "parent_id": 1, "role": "assistant", "content": "b", "status": "complete",
                 "created_at": "2099-01-01T00:00:00+00:00", "meta": {"cost_usd": 5}},
            ],
        }
        imported = user.post("/api/import", files={"file": ("chat.json", json.dumps(export), "application/json")})
        assert imported.status_code in (200, 201), imported.text
        status = budget(user)
        assert status["spent_usd"] == pytest.approx(spent)
        assert status["remaining_usd"] == pytest.approx(0.01 - spent)
    finally:
        user.close()


def test_anthropic_prompts_are_reserved_at_anthropics_own_count(admin: Api, server: Server,
                                                                 fake_upstream: Any) -> None:
    """cl100k counts this text well below what the (fake) Claude tokenizer bills: the reservation must
    use Claude's count, or a budget would let an answer through that overruns it."""
    user = server.api()
    try:
        text = "漢字とかなの文章。" * 150
        estimate = user.post("/api/tokens/count", json={"model": "claude-fake", "text": text}).json()["tokens"]
        billed = 1 + 2 * len(text)  # the fake: a token for the one word, two more per character past ASCII
        assert billed > 1.5 * estimate
        # claude-fake: $3 / $15 per million tokens; 100 answer tokens cost $0.0015.
        answer = 100 * 15 / 1_000_000
        limit = (estimate + billed) / 2 * 3 / 1_000_000 + answer
        set_budget(admin, user.user["id"], round(limit, 6))
        thread = user.thread(model="claude-fake")
        refused = user.post(f"/api/threads/{thread['id']}/messages", json={"content": text, "max_tokens": 100})
        assert refused.status_code == 402, refused.text
        set_budget(admin, user.user["id"], round(billed * 3 / 1_000_000 + answer + 0.001, 6))
        done = user.send(thread["id"], text, max_tokens=100)
        assert done.last.event == "done", done.events
        assert done.of("usage")[0].data["prompt_tokens"] >= billed
    finally:
        user.close()


@pytest.fixture
def budget_server(backend_url, fake_upstream, tmp_path):
    """A server whose every user has a $0.05 daily budget (the server-wide default)."""
    import os

    from tests.conftest import _fresh_pg_database, make_env

    url = _fresh_pg_database(backend_url, f"convo_budget_{os.getpid()}") if backend_url else None
    server = Server(tmp_path, make_env(tmp_path, fake_upstream, url, DAILY_COST_BUDGET="0.05"))
    if url:
        assert server.convo("migrate").returncode == 0
    yield server.start()
    server.stop()


def test_every_way_an_answer_ends_is_settled_and_spent_is_the_sum_of_costs(budget_server: Server) -> None:
    from tests.api.test_files import db_execute, db_rows
    from tests.api.test_stream import answer_id

    user = budget_server.api()
    assert budget(user)["limit_usd"] == 0.05, "the server-wide default applies"
    thread = user.thread(model="fake-gpt")
    costs = [user.send(thread["id"], "done [[fake usage=100,200]]", max_tokens=500).of("usage")[0].data["cost_usd"]]

    # Cancelled: charged for what was written, nothing left reserved.
    slow = user.send(thread["id"], "[[fake tokens=400 interval=0.05]]", max_tokens=500, stop_after=5)
    user.post(f"/api/convo/messages/{answer_id(slow)}/cancel")
    cancelled = user.follow(answer_id(slow), after=5).last.data["message"]
    assert cancelled["status"] == "cancelled" and cancelled["meta"]["cost_usd"] > 0
    costs.append(cancelled["meta"]["cost_usd"])

    # The upstream broke off: the tokens it sent are charged.
    broken = user.send(thread["id"], "[[fake tokens=10 fail=break after=3]]", max_tokens=500)
    assert broken.last.event == "error"
    stored = user.get(f"/api/threads/{thread['id']}").json()["messages"][-1]
    assert stored["status"] == "error" and stored["meta"]["cost_usd"] > 0
    costs.append(stored["meta"]["cost_usd"])

    status = budget(user)
    assert status["reserved_usd"] == 0
    assert status["spent_usd"] == pytest.approx(sum(costs), abs=1e-6), "spent is the sum of the answers' costs"

    # Killed mid-answer: after the restart the reservation is released; what was spent stays.
    user.send(thread["id"], "[[fake tokens=400 interval=0.05]]", max_tokens=500, stop_after=3)
    assert budget(user)["reserved_usd"] > 0
    budget_server.restart(kill=True)
    status = budget(user)
    assert status["reserved_usd"] == 0 and status["spent_usd"] == pytest.approx(sum(costs), abs=1e-6)

    # Midnight: what was spent yesterday no longer counts today.
    budget_server.stop()
    db_execute(budget_server, "UPDATE spend SET day = %s WHERE user_id = %s",
               (datetime.now(UTC) - timedelta(days=1)).date(), user.user["id"])
    budget_server.start()
    status = budget(user)
    assert status["spent_usd"] == 0 and status["remaining_usd"] == 0.05
    assert len(db_rows(budget_server, "SELECT id FROM spend WHERE user_id = %s", user.user["id"])) == len(costs)
