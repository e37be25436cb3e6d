"""Scale mode with real processes: two API processes (A and B) on one PostgreSQL and one Redis. An answer
started on A is followed, resumed and cancelled from B; a process killed mid-answer, and Redis going
away, lose nothing a client saw and leave nothing streaming forever."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.api.test_exports import wait_job
from tests.api.test_files import upload, wait_ready
from tests.api.test_stream import SLOW, SLOW_TEXT, answer_id, wait_for
from tests.conftest import Cluster
from tests.support import Api, Stream

pytestmark = pytest.mark.slow


def on(server, api: Api) -> Api:
    """The same user's client, talking to another process."""
    other = Api(server.url, token=api.token)
    other.user = api.user
    return other


def stored(api: Api, thread_id: int) -> dict:
    return api.get(f"/api/threads/{thread_id}").json()["messages"][-1]


def test_an_answer_started_on_a_is_followed_and_resumed_on_b(cluster: Cluster) -> None:
    a, b = cluster.servers
    user = a.api()
    other = on(b, user)
    thread = user.thread()
    seen: dict[str, Stream] = {}

    def follow_from_b(message_id: int) -> None:
        seen["b"] = other.follow(message_id, after=0)

    first = user.send(thread["id"], SLOW, stop_after=5)  # A's client hangs up mid-answer
    follower = threading.Thread(target=follow_from_b, args=(answer_id(first),))
    follower.start()
    rest = other.follow(answer_id(first), after=first.ids[-1])  # and resumes on B
    follower.join(30)

    assert rest.ids[0] == first.ids[-1] + 1
    assert first.ids + rest.ids == list(range(1, rest.ids[-1] + 1)), "nothing lost, nothing repeated"
    assert first.text + rest.text == SLOW_TEXT
    assert rest.last.event == "done" and rest.last.data["message"]["content"] == SLOW_TEXT
    whole = seen["b"]
    assert whole.ids == list(range(1, rest.ids[-1] + 1)) and whole.text == SLOW_TEXT
    assert [e.event for e in whole.events[:5]] == [e.event for e in first.events]
    assert stored(user, thread["id"])["content"] == SLOW_TEXT


def test_cancel_on_b_stops_the_answer_running_on_a_within_a_second(cluster: Cluster) -> None:
    a, b = cluster.servers
    user = a.api()
    other = on(b, user)
    thread = user.thread()
    started = user.send(thread["id"], "[[fake tokens=400 interval=0.05]]", stop_after=4)
    message_id = answer_id(started)
    asked = time.monotonic()
    assert other.post(f"/api/convo/messages/{message_id}/cancel").status_code in (200, 202, 204)
    end = other.follow(message_id, after=4)
    elapsed = time.monotonic() - asked
    assert end.last.event == "done" and end.last.data["message"]["status"] == "cancelled"
    assert elapsed < 1.5, elapsed
    text = end.last.data["message"]["content"]
    assert 0 < len(text.split()) < 100
    assert stored(user, thread["id"])["status"] == "cancelled" and stored(user, thread["id"])["content"] == text
    # The thread takes the next message, on either process.
    assert other.send(thread["id"], "and now?").last.event == "done"


def test_a_killed_process_s_answer_ends_interrupted_with_every_token_it_streamed(cluster: Cluster) -> None:
    a, b = cluster.servers
    user = a.api()
    other = on(b, user)
    thread = user.thread()
    first = user.send(thread["id"], "[[fake tokens=400 interval=0.05]]", stop_after=12)
    message_id = answer_id(first)
    watcher: dict[str, Stream] = {}
    follower = threading.Thread(target=lambda: watcher.update(b=other.follow(message_id, after=0)))
    follower.start()
    time.sleep(0.5)
    killed = time.monotonic()
    a.stop(kill=True)
    follower.join(30)
    ended_after = time.monotonic() - killed
    seen = watcher["b"]
    assert seen.last.event == "error" and seen.last.data["code"] == "interrupted"
    assert ended_after < 2 + 2 + 3, ended_after  # lease + a reap period + slack
    assert seen.ids == list(range(1, seen.ids[-1] + 1))
    message = stored(other, thread["id"])
    assert message["status"] == "interrupted"
    assert message["content"] == seen.text and len(seen.text.split()) >= 12
    # A new message is taken; a process that starts now does not end B's answers.
    live = other.send(thread["id"], "[[fake tokens=60 interval=0.05]]", stop_after=3)
    a.start()
    rest = other.follow(answer_id(live), after=3)
    assert rest.last.event == "done" and rest.last.data["message"]["status"] == "complete"


def test_redis_going_away_ends_nothing_and_cancel_still_works(make_cluster, private_redis) -> None:
    group: Cluster = make_cluster(private_redis.url)
    a, b = group.servers
    user = a.api()
    other = on(b, user)
    thread = user.thread()

    # Redis restarts empty in the middle of an answer: A finishes it, and B follows it to the end.
    first = user.send(thread["id"], "[[fake tokens=60 interval=0.05]]", stop_after=5)
    private_redis.stop()
    private_redis.start()
    rest = other.follow(answer_id(first), after=5)
    assert rest.last.event == "done" and rest.last.data["message"]["content"] == " ".join(
        f"w{i}" for i in range(60))
    assert first.ids + [i for i in rest.ids if i > 5] == list(range(1, rest.ids[-1] + 1))

    # Redis stopped: A still streams to its own client, B gives the end from the database, /readyz
    # says so, and a cancel sent to B reaches A through the database.
    private_redis.stop()
    wait_for(lambda: httpx.get(a.url + "/readyz").status_code == 503)
    whole = user.send(thread["id"], "still here?")
    assert whole.last.event == "done" and whole.text == "You said: still here?"
    assert other.follow(answer_id(whole)).last.event == "done"
    slow = user.send(thread["id"], "[[fake tokens=400 interval=0.05]]", stop_after=3)
    assert other.post(f"/api/convo/messages/{answer_id(slow)}/cancel").status_code in (200, 202, 204)
    wait_for(lambda: stored(user, thread["id"])["status"] == "cancelled", timeout=5)
    private_redis.start()
    wait_for(lambda: httpx.get(b.url + "/readyz").status_code == 200)


def test_one_host_serves_with_several_workers_and_counts_once(cluster: Cluster) -> None:
    """`convo serve --workers 2`: answers work whichever worker takes each request, and /metrics adds up
    every worker's samples."""
    host = cluster.add(workers=2)
    user = host.api()
    thread = user.thread()
    for n in range(6):
        stream = user.send(thread["id"], f"hello {n}")
        assert stream.last.event == "done", stream.events
        follower = user.follow(answer_id(stream))
        assert follower.text == f"You said: hello {n}"
    for _ in range(20):
        assert httpx.get(host.url + "/healthz").status_code == 200
    metrics = httpx.get(host.url + "/metrics").text
    healthz = [line for line in metrics.splitlines()
               if line.startswith("convo_http_request_duration_seconds_count") and '"/healthz"' in line]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in healthz) == 20
    assert "convo_sse_sessions_active 0.0" in metrics


def test_several_workers_need_postgresql_and_redis(sqlite_server) -> None:
    refused = sqlite_server.convo("serve", "--workers", "2", "--port", "1")
    assert refused.returncode != 0 and "REDIS_URL" in refused.stderr


def chunks_in_db(cluster: Cluster, attachment_id: int) -> int:
    import psycopg

    with psycopg.connect(cluster.database_url) as conn:
        return conn.execute("SELECT count(*) FROM chunks WHERE attachment_id = %s", (attachment_id,)).fetchone()[0]


def test_files_are_indexed_by_the_worker_even_when_it_dies_mid_file(cluster: Cluster) -> None:
    import os
    import signal
    import subprocess

    a, b = cluster.servers
    user = a.api()
    thread = user.thread()
    small = upload(user, thread["id"], "notes.md", b"# Lighthouse\n\nThe keeper logs the beam every night.\n")
    assert small.status_code == 201, small.text
    assert wait_ready(on(b, user), small.json()["id"])["status"] == "ready"

    # Long enough to be caught mid-way: embedding takes the worker a few seconds.
    text = "\n\n".join(f"Paragraph {n}: the harbour log records tides, ships and weather on day {n}. " * 6
                       for n in range(120)).encode()
    big = upload(user, thread["id"], "harbour.txt", text).json()
    wait_for(lambda: user.get(f"/api/attachments/{big['id']}").json()["status"] == "processing", timeout=30)
    worker = cluster.workers[0]
    children = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True).stdout.split()
    assert children, "the worker has a child running the job"
    for pid in children:
        os.kill(int(pid), signal.SIGKILL)
    done = wait_ready(user, big["id"], timeout=90)
    assert done["status"] == "ready", done
    assert done["chunk_count"] > 5 and chunks_in_db(cluster, big["id"]) == done["chunk_count"]
    found = user.post("/api/rag/search", json={"q": "harbour tides day 77", "mode": "bm25"}).json()
    assert found["items"] and found["items"][0]["attachment_id"] == big["id"]


def test_a_budget_holds_across_processes(cluster: Cluster) -> None:
    a, b = cluster.servers
    admin_email = "scale-admin@example.com"
    created = a.convo("user", "create", "--email", admin_email, "--password", "correct horse battery", "--admin")
    assert created.returncode == 0, created.stderr
    admin = Api(a.url)
    login = admin.http.post("/api/auth/login", json={"email": admin_email, "password": "correct horse battery"})
    admin.token = login.json()["token"]
    user = a.api()
    # Each answer may write 2,000 tokens (about $0.016 with its prompt): three fit in $0.05.
    assert admin.patch(f"/api/admin/users/{user.user['id']}", json={"daily_budget_usd": 0.05}).status_code == 200
    threads = [user.thread(model="fake-gpt") for _ in range(12)]
    outcomes: list[int] = []

    def ask(n: int) -> None:
        client = Api((a if n % 2 else b).url, token=user.token)
        response = client.post(f"/api/threads/{threads[n]['id']}/messages",
                               json={"content": f"q{n} [[fake tokens=30 interval=0.05]]", "max_tokens": 2000})
        outcomes.append(response.status_code)
        client.close()

    askers = [threading.Thread(target=ask, args=(n,)) for n in range(12)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(60)
    assert sorted(outcomes) == [200] * 3 + [402] * 9, outcomes
    status = user.get("/api/budget").json()
    assert status["spent_usd"] + status["reserved_usd"] <= 0.05


def test_an_export_delivered_twice_makes_one_file(cluster: Cluster) -> None:
    from pathlib import Path

    import redis

    from convo.config import Settings
    from convo.worker import celery_app

    a, _ = cluster.servers
    user = a.api()
    thread = user.thread(title="Twice")
    user.send(thread["id"], "hello [[fake reply='Once.']]")
    job = user.post(f"/api/threads/{thread['id']}/export/jobs", json={"format": "json"}).json()
    settings = Settings(REDIS_URL=cluster.env["REDIS_URL"], CONVO_REDIS_PREFIX=cluster.prefix)
    celery_app(settings).send_task("convo.job", args=["export", {"job_id": job["job_id"]}])
    broker = redis.Redis.from_url(cluster.env["REDIS_URL"])
    wait_for(lambda: broker.llen(f"{cluster.prefix}jobs") == 0 and not broker.hlen("unacked"), timeout=30)
    body = wait_job(user, job["job_id"])
    assert body["status"] == "succeeded"
    folder = Path(cluster.env["CONVO_DATA_DIR"]) / "exports" / str(user.user["id"])
    assert [p.name for p in folder.iterdir()] == [f"{job['job_id']}.json"]
    assert "Once." in user.get(body["download_url"]).text
    # The worker's own metrics count one success, not two.
    scraped = httpx.get(cluster.worker_metrics[0]).text
    assert 'convo_export_jobs_total{status="succeeded"} 1.0' in scraped, scraped[-2000:]


def test_deleting_a_chat_on_b_stops_its_answer_on_a(cluster: Cluster) -> None:
    a, b = cluster.servers
    user = a.api()
    thread = user.thread()
    seen: dict[str, Stream] = {}
    reader = threading.Thread(target=lambda: seen.update(s=user.send(thread["id"], "[[fake tokens=400 interval=0.05]]")))
    reader.start()
    wait_for(lambda: user.get(f"/api/threads/{thread['id']}").json()["messages"])
    time.sleep(0.3)
    assert on(b, user).delete(f"/api/threads/{thread['id']}").status_code == 204
    reader.join(15)
    assert seen["s"].last.event == "error" and seen["s"].last.data["code"] == "thread_deleted"
    assert len(seen["s"].of("delta")) < 100
