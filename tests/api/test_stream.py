"""The stream as a client sees it: format, resume, followers, cancel, heartbeats, failures, restarts."""

from __future__ import annotations

import os
import threading
import time

import httpx
import pytest

from tests.support import Api

SCALE_MODE = True  # also run with Redis streams, Redis cancel and a Celery worker
SLOW = "[[fake tokens=40 interval=0.05]]"
SLOW_TEXT = " ".join(f"w{i}" for i in range(40))


def answer_id(stream) -> int:
    return stream.events[0].data["assistant_message"]["id"]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def test_event_format_ids_usage_and_stored_message(api, fake_upstream):
    thread = api.thread()
    stream = api.send(thread["id"], "count me [[fake reply='One two three.' usage=12,34]]")
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["x-accel-buffering"] == "no"
    kinds = [e.event for e in stream.events]
    assert kinds[0] == "start" and kinds[-2:] == ["usage", "done"]
    assert set(kinds[1:-2]) == {"delta"}
    assert stream.ids == list(range(1, len(stream.events) + 1))
    assert stream.text == "One two three."

    start = stream.events[0].data
    assert start["thread_id"] == thread["id"]
    assert start["user_message"]["content"].startswith("count me")
    assert start["assistant_message"]["status"] == "streaming"

    usage = stream.of("usage")[0].data
    assert usage == {"prompt_tokens": 12, "completion_tokens": 34, "cost_usd": pytest.approx((12 * 2 + 34 * 8) / 1e6)}
    done = stream.last.data["message"]
    assert done["status"] == "complete" and done["content"] == "One two three."
    assert done["meta"]["prompt_tokens"] == 12 and done["meta"]["ttft_ms"] >= 0 and done["meta"]["latency_ms"] > 0

    stored = api.get(f"/api/threads/{thread['id']}").json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][1]["content"] == "One two three."
    assert stored["messages"][1]["meta"]["cost_usd"] == usage["cost_usd"]
    assert stored["current_leaf_id"] == done["id"]
    assert stored["title"] == "count me [[fake reply='One two three.' usage=12,34]]", "titled after the first message"


def test_usage_is_counted_when_upstream_sends_none(api):
    thread = api.thread()
    stream = api.send(thread["id"], "[[fake reply='hello world again' nousage]]")
    usage = stream.of("usage")[0].data
    assert usage["completion_tokens"] == 3  # tiktoken: "hello", " world", " again"
    assert usage["prompt_tokens"] > 0


def test_reconnect_with_last_event_id_gets_the_rest_once(api):
    thread = api.thread()
    first = api.send(thread["id"], SLOW, stop_after=6)  # hang up mid-answer
    assert len(first.events) == 6
    rest = api.follow(answer_id(first), after=first.ids[-1])
    assert rest.ids[0] == first.ids[-1] + 1
    assert first.ids + rest.ids == list(range(1, rest.ids[-1] + 1)), "nothing lost, nothing repeated"
    assert first.text + rest.text == SLOW_TEXT
    assert rest.last.event == "done" and rest.last.data["message"]["content"] == SLOW_TEXT

    # `?after=` works too, and a finished answer replays identically from the start.
    again = api.stream("GET", f"/api/convo/messages/{answer_id(first)}/stream", params={"after": 0})
    assert again.ids == list(range(1, rest.ids[-1] + 1))
    assert again.text == SLOW_TEXT


def test_second_client_follows_the_same_answer(api):
    thread = api.thread()
    seen: dict[str, object] = {}

    def follower(message_id: int) -> None:
        seen["stream"] = api.follow(message_id, after=0)

    first = api.send(thread["id"], SLOW, stop_after=2)
    other = threading.Thread(target=follower, args=(answer_id(first),))
    other.start()
    rest = api.follow(answer_id(first), after=2)
    other.join(10)
    follower_stream = seen["stream"]
    assert follower_stream.text == SLOW_TEXT
    assert follower_stream.ids == first.ids + rest.ids


def test_cancel_stops_within_a_second_and_keeps_partial_text(server, api):
    thread = api.thread()
    first = api.send(thread["id"], "[[fake tokens=400 interval=0.05]]", stop_after=5)
    message_id = answer_id(first)
    other_tab = Api(server.url, api.token)
    started = time.monotonic()
    assert other_tab.post(f"/api/convo/messages/{message_id}/cancel").status_code == 202
    rest = api.follow(message_id, after=first.ids[-1])
    # The goal is well under a second; a loaded 2-core runner gets some slack (the bench measures it).
    assert time.monotonic() - started < 3.0
    done = rest.last
    assert done.event == "done" and done.data["message"]["status"] == "cancelled"
    partial = first.text + rest.text
    assert partial and done.data["message"]["content"] == partial
    assert len(partial.split()) < 100
    assert rest.of("usage")[0].data["completion_tokens"] > 0, "a cancelled answer still reports what it used"
    assert other_tab.post(f"/api/convo/messages/{message_id}/cancel").status_code == 202, "idempotent"
    stored = api.get(f"/api/threads/{thread['id']}").json()["messages"][-1]
    assert stored["status"] == "cancelled" and stored["content"] == partial


def test_heartbeats_flow_while_the_model_is_silent(api):
    thread = api.thread()
    stream = api.send(thread["id"], "[[fake first=2.8 reply='late']]")
    # CONVO_SSE_PING_SECONDS=1 in tests; the silence stays under CONVO_UPSTREAM_TIMEOUT=3.
    assert stream.pings >= 2
    assert stream.text == "late"


@pytest.mark.parametrize(
    ("directive", "code"),
    [
        ("fail=http_500", "upstream_error"),
        ("fail=http_401", "upstream_auth"),
        ("fail=http_429", "upstream_rate_limited"),
        ("fail=http_400", "upstream_bad_request"),
        ("fail=break after=3 tokens=10", "upstream_stream_broken"),
        ("fail=garbage after=2 tokens=10", "upstream_protocol_error"),
    ],
)
def test_upstream_failures_end_in_an_error_event(api, directive, code):
    thread = api.thread()
    stream = api.send(thread["id"], f"[[fake {directive}]]")
    assert stream.last.event == "error"
    assert stream.last.data["code"] == code and stream.last.data["message"]
    stored = api.get(f"/api/threads/{thread['id']}").json()["messages"][-1]
    assert stored["status"] == "error"
    assert stored["meta"]["error"]["code"] == code
    if "after=3" in directive:
        assert stored["content"] == "w0 w1 w2 ", "the text before the break is kept"


def test_silent_anthropic_upstream_times_out(api):
    thread = api.thread(model="claude-fake")
    started = time.monotonic()
    hung = api.send(thread["id"], "[[fake fail=hang after=1]]")
    assert hung.last.data["code"] == "upstream_timeout"
    assert time.monotonic() - started < 8


def test_unreachable_and_silent_upstreams(api, server):
    thread = api.thread()
    refused = api.send(thread["id"], "hello", model="dead-model")
    assert refused.last.event == "error" and refused.last.data["code"] == "upstream_unreachable"
    started = time.monotonic()
    hung = api.send(thread["id"], "[[fake fail=hang after=1]]")
    assert hung.last.data["code"] == "upstream_timeout"
    assert time.monotonic() - started < 8  # CONVO_UPSTREAM_TIMEOUT=3 in tests
    assert httpx.get(server.url + "/readyz").status_code == 200
    fine = api.send(thread["id"], "still there?")
    assert fine.last.event == "done"


def test_anthropic_provider_streams_with_system_prompt_and_exact_usage(api, fake_upstream):
    thread = api.thread(model="claude-fake", system_prompt="You are terse.", temperature=1.7)
    stream = api.send(thread["id"], "hi claude [[fake reply='Hello from Claude' usage=21,4]]")
    assert stream.text == "Hello from Claude"
    assert stream.of("usage")[0].data["completion_tokens"] == 4
    assert stream.of("usage")[0].data["cost_usd"] == pytest.approx((21 * 3 + 4 * 15) / 1e6)
    sent = fake_upstream.requests[-1]
    assert sent["api"] == "anthropic" and sent["model"] == "claude-fake"
    assert sent["system"] == "You are terse."
    assert sent["temperature"] == 1.0, "Anthropic's range is 0..1"
    key_headers = (sent["headers"].get("x-api-key"), sent["headers"].get("authorization"))
    assert "sk-ant-test" in key_headers or "Bearer sk-ant-test" in key_headers


def test_thread_model_and_temperature_apply_and_requests_override_them(api, fake_upstream):
    thread = api.thread(model="fake-mini", temperature=0.2)
    api.send(thread["id"], "first")
    sent = fake_upstream.requests[-1]
    assert (sent["model"], sent["temperature"]) == ("fake-mini", 0.2)
    assert sent["headers"]["authorization"] == "Bearer sk-test"
    stream = api.send(thread["id"], "second", model="fake-gpt", temperature=0.9, max_tokens=50)
    sent = fake_upstream.requests[-1]
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == ("fake-gpt", 0.9, 50)
    assert stream.last.data["message"]["model"] == "fake-gpt"
    assert [m["content"] for m in sent["messages"]] == ["first", "You said: first", "second"]


def test_history_that_does_not_fit_is_trimmed_oldest_first(api, fake_upstream):
    thread = api.thread(model="fake-mini")  # a 256-token window
    for i in range(6):
        api.send(thread["id"], f"message {i} " + "lorem ipsum " * 12)
    sent = fake_upstream.requests[-1]["messages"]
    assert sent[-1]["content"].startswith("message 5")
    assert len(sent) < 11 and not sent[0]["content"].startswith("message 0")
    too_long = api.post(f"/api/threads/{thread['id']}/messages", json={"content": "word " * 400})
    assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "context_length_exceeded"


def test_bad_generation_requests_are_4xx_and_store_nothing(api):
    thread = api.thread()
    tid = thread["id"]
    assert api.post(f"/api/threads/{tid}/messages", json={"content": ""}).status_code == 422
    assert api.post(f"/api/threads/{tid}/messages", json={"content": "   "}).json()["error"]["code"] == "empty_message"
    assert api.post(f"/api/threads/{tid}/messages", json={"content": "x", "model": "nope"}).status_code == 422
    assert api.post(f"/api/threads/{tid}/messages", json={"content": "x", "temperature": -1}).status_code == 422
    assert api.post(f"/api/threads/{tid}/messages", json={"content": "x", "max_tokens": 9000}).status_code == 422
    assert api.post(f"/api/threads/{tid}/messages", json={"content": "x", "parent_id": 10**9}).status_code == 404
    assert api.get(f"/api/threads/{tid}").json()["messages"] == []
    stream = api.send(tid, "ok")
    user_id = stream.events[0].data["user_message"]["id"]
    under_user = api.post(f"/api/threads/{tid}/messages", json={"content": "x", "parent_id": user_id})
    assert under_user.status_code == 422 and under_user.json()["error"]["code"] == "invalid_parent"
    bad_resume = api.get(f"/api/convo/messages/{answer_id(stream)}/stream", headers={"Last-Event-ID": "abc"})
    assert bad_resume.status_code == 422
    assert api.get(f"/api/convo/messages/{user_id}/stream").status_code == 404
    assert api.post(f"/api/convo/messages/{user_id}/cancel").status_code == 422


def test_follow_up_while_answer_streams_is_refused(api):
    thread = api.thread()
    first = api.send(thread["id"], SLOW, stop_after=2)
    busy = api.post(f"/api/threads/{thread['id']}/messages", json={"content": "wait"})
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "parent_streaming"
    api.post(f"/api/convo/messages/{answer_id(first)}/cancel")


def test_messages_form_a_tree_and_switch_picks_the_branch(api):
    thread = api.thread()
    tid = thread["id"]
    a1 = api.send(tid, "first question").last.data["message"]
    a2 = api.send(tid, "second question").last.data["message"]
    # A new branch under the first answer: a sibling of "second question".
    branch = api.send(tid, "another second question", parent_id=a1["id"])
    new_user = branch.events[0].data["user_message"]
    assert new_user["parent_id"] == a1["id"]
    assert (new_user["version_index"], new_user["version_count"]) == (2, 2)
    view = api.get(f"/api/threads/{tid}").json()
    assert [m["content"] for m in view["messages"]][2] == "another second question"

    switched = api.post(f"/api/threads/{tid}/switch", json={"message_id": a2["parent_id"]}).json()
    assert [m["content"] for m in switched["messages"]] == [
        "first question", "You said: first question", "second question", "You said: second question"]
    assert switched["current_leaf_id"] == a2["id"]
    assert switched["messages"][2]["sibling_ids"] == [a2["parent_id"], new_user["id"]]
    assert api.post(f"/api/threads/{tid}/switch", json={"message_id": 10**9}).status_code == 404


def metric(server, line_start: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    found = [line for line in text.splitlines() if line.startswith(line_start + " ")]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


def test_metrics_count_generations(api, server):
    thread = api.thread()
    prompt, completion = (metric(server, f'convo_tokens_total{{kind="{k}",model="fake-gpt"}}')
                          for k in ("prompt", "completion"))
    cost = metric(server, 'convo_cost_usd_total{model="fake-gpt"}')
    api.send(thread["id"], "[[fake reply='metered' usage=5,7]]")
    assert metric(server, 'convo_tokens_total{kind="prompt",model="fake-gpt"}') == prompt + 5
    assert metric(server, 'convo_tokens_total{kind="completion",model="fake-gpt"}') == completion + 7
    assert metric(server, 'convo_cost_usd_total{model="fake-gpt"}') == pytest.approx(cost + (5 * 2 + 7 * 8) / 1e6)
    text = httpx.get(server.url + "/metrics").text
    assert "convo_ttft_seconds_bucket" in text
    assert 'convo_http_request_duration_seconds_count{method="POST",route="/api/threads/{thread_id}/messages"' in text
    assert "convo_sse_sessions_active" in text
    for name in ("convo_generation_seconds", "convo_upstream_errors_total", "convo_budget_rejections_total",
                 "convo_export_jobs_total", "convo_search_seconds", "convo_rag_retrieval_seconds"):
        assert name in text


def test_a_restart_keeps_finished_answers_replayable(own_server):
    api = own_server.api()
    thread = api.thread()
    full = api.send(thread["id"], "[[fake reply='kept across restarts']]")
    own_server.restart()
    replay = api.follow(answer_id(full), after=0)
    assert replay.text == "kept across restarts"
    assert replay.last.event == "done" and replay.last.id == full.last.id, "the end keeps its original id"
    tail = api.follow(answer_id(full), after=3)
    # Event by event while the log is kept (scale mode: in Redis), else the end in short form.
    assert tail.ids[0] > 3 and tail.last.id == full.last.id and tail.last.event == "done"
    assert tail.last.data["message"]["content"] == "kept across restarts"
    assert api.follow(answer_id(full), after=full.last.id).events == []


@pytest.mark.parametrize("kill", [True, False], ids=["killed", "stopped"])
def test_answers_cut_by_a_restart_are_marked_interrupted(own_server, kill):
    api = own_server.api()
    thread = api.thread()
    first = api.send(thread["id"], "[[fake tokens=400 interval=0.02]]", stop_after=30)
    # Until a checkpoint holds what the client saw (every 0.2 s in tests).
    wait_for(lambda: api.get(f"/api/threads/{thread['id']}").json()["messages"][-1]["content"].startswith(
        first.text))
    own_server.restart(kill=kill)
    # At once when the process is the only one; in scale mode another process's reaper ends it within
    # the lease (2 s in tests) and a reap period.
    message = wait_for(lambda: (m := api.get(f"/api/threads/{thread['id']}").json()["messages"][-1])
                       ["status"] == "interrupted" and m)
    assert message["content"].startswith(first.text), "the text written before the restart is kept"
    rest = api.follow(answer_id(first), after=first.ids[-1])
    assert rest.last.event == "error" and rest.last.data["code"] == "interrupted"
    # A client that saw events the last checkpoint had not counted still learns how it ended.
    beyond = api.follow(answer_id(first), after=first.ids[-1] + 1000)
    assert [e.event for e in beyond.events] == ["error"] and beyond.last.id == first.ids[-1] + 1001
    assert api.send(thread["id"], "and now?").last.event == "done", "the thread goes on"


def test_deleting_a_chat_while_it_answers_ends_the_stream_with_a_reason(api):
    thread = api.thread()
    seen: dict[str, object] = {}
    reader = threading.Thread(target=lambda: seen.update(s=api.send(thread["id"], "[[fake tokens=400 interval=0.05]]")))
    reader.start()
    wait_for(lambda: api.get(f"/api/threads/{thread['id']}").json()["messages"])
    time.sleep(0.3)
    assert api.delete(f"/api/threads/{thread['id']}").status_code == 204
    reader.join(15)
    stream = seen["s"]
    assert stream.last.event == "error" and stream.last.data["code"] == "thread_deleted", stream.events[-3:]
    assert len(stream.of("delta")) < 100


@pytest.fixture
def two_answer_server(backend_url, fake_upstream, tmp_path):
    from tests.conftest import Server, _fresh_pg_database, make_env

    url = _fresh_pg_database(backend_url, f"convo_cap_{os.getpid()}") if backend_url else None
    server = Server(tmp_path, make_env(tmp_path, fake_upstream, url, CONVO_USER_MAX_ANSWERS="2",
                                       CONVO_USER_MAX_STREAMS="2"))
    if url:
        assert server.convo("migrate").returncode == 0
    yield server.start()
    server.stop()


def test_one_user_cannot_run_more_answers_at_once_than_allowed(two_answer_server):
    api, other = two_answer_server.api(), two_answer_server.api()
    threads = [api.thread() for _ in range(3)]
    running = [api.send(t["id"], "[[fake tokens=400 interval=0.05]]", stop_after=2) for t in threads[:2]]
    refused = api.post(f"/api/threads/{threads[2]['id']}/messages", json={"content": "one more"})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_answers", refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert api.get(f"/api/threads/{threads[2]['id']}").json()["messages"] == [], "nothing written"
    assert other.send(other.thread()["id"], "meanwhile").last.event == "done", "other users are not held up"
    api.post(f"/api/convo/messages/{answer_id(running[0])}/cancel")
    wait_for(lambda: api.post(f"/api/threads/{threads[2]['id']}/messages",
                              json={"content": "now [[fake reply='ok']]"}).status_code == 200)
    api.post(f"/api/convo/messages/{answer_id(running[1])}/cancel")


def test_one_user_cannot_hold_more_streams_open_than_allowed(two_answer_server):
    api = two_answer_server.api()
    thread = api.thread()
    started = api.send(thread["id"], "[[fake tokens=400 interval=0.05]]", stop_after=2)
    message_id = answer_id(started)
    followers = [threading.Thread(target=Api(two_answer_server.url, api.token).follow, args=(message_id,))
                 for _ in range(2)]
    for follower in followers:
        follower.start()
    wait_for(lambda: metric(two_answer_server, "convo_sse_sessions_active") >= 2)
    refused = api.get(f"/api/convo/messages/{message_id}/stream", timeout=10)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_streams"
    assert int(refused.headers["retry-after"]) >= 1
    api.post(f"/api/convo/messages/{message_id}/cancel")
    for follower in followers:
        follower.join(30)
    assert api.follow(message_id).last.event == "done", "closed streams no longer count"
