"""deploy/nginx.conf in front of a real Convo: answers stream through it event by event, heartbeats pass,
a dropped stream resumes after Last-Event-ID, and uploads reach Convo's own size check."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CI, ROOT, Server
from tests.fakes.upstream import free_port
from tests.support import Api


def start_nginx(folder: Path, ports: list[int]) -> tuple[subprocess.Popen[bytes], str]:
    """deploy/nginx.conf as shipped, its upstream pointed at these `convo serve` ports."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        if CI:
            pytest.fail("nginx is required in CI (scripts/ensure_test_packages.sh installs it)")
        pytest.skip("nginx is not installed")
    port = free_port()
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    site = site.replace("server 127.0.0.1:8000;", " ".join(f"server 127.0.0.1:{p};" for p in ports))
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    temp = " ".join(f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = folder / "nginx.conf"
    config.write_text(
        ("user root;\n" if os.getuid() == 0 else "")
        + f"worker_processes 1;\npid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'};\n"
        + f"events {{ worker_connections 256; }}\nhttp {{\naccess_log off;\n{temp}\n{site}\n}}\n"
    )
    process = subprocess.Popen([binary, "-p", str(folder), "-c", str(config), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError((folder / "error.log").read_text())
        time.sleep(0.05)


@pytest.fixture
def proxy(server: Server, tmp_path: Path) -> Iterator[str]:
    process, url = start_nginx(tmp_path, [server.port])
    yield url
    process.terminate()
    process.wait(10)


def timed_events(api: Api, thread_id: int, content: str) -> list[tuple[float, str]]:
    """Each line of an answer's stream with the second it arrived, read through the proxy."""
    lines: list[tuple[float, str]] = []
    started = time.monotonic()
    with api.http.stream("POST", f"/api/threads/{thread_id}/messages", json={"content": content},
                         headers=api.headers) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append((time.monotonic() - started, line))
    return lines


def test_answers_stream_through_nginx_event_by_event_with_heartbeats(proxy: str) -> None:
    api = Api(proxy)
    api.signup(f"nginx-{os.getpid()}-{time.monotonic_ns()}@example.com")
    try:
        thread = api.thread()
        # First token after 2.5 s of silence (the test server pings every second), then 20 a tenth apart.
        lines = timed_events(api, thread["id"], "count [[fake first=2.5 tokens=20 interval=0.1]]")
        deltas = [at for at, line in lines if line == "event: delta"]
        pings = [at for at, line in lines if line == ": ping"]
        done = next(at for at, line in lines if line == "event: done")
        assert len(deltas) >= 10
        # Buffered, everything would arrive together at the end; streamed, it arrives as written.
        assert done - deltas[0] > 1.0, lines
        assert any(at < deltas[0] for at in pings), "no heartbeat passed during the silence"

        # A reader that comes back through the proxy resumes after the last event it saw.
        message_id = api.send(thread["id"], "again [[fake tokens=8]]").of("start")[0].data["assistant_message"]["id"]
        resumed = api.follow(message_id, after=3)
        assert resumed.ids[0] == 4 and resumed.last.event == "done"
    finally:
        api.close()


def test_uploads_reach_convo_whose_own_limit_answers(proxy: str) -> None:
    api = Api(proxy)
    api.signup(f"nginx-up-{os.getpid()}-{time.monotonic_ns()}@example.com")
    try:
        thread = api.thread()
        small = api.post(f"/api/threads/{thread['id']}/attachments",
                         files={"file": ("notes.txt", b"The lighthouse keeper logs ships.", "text/plain")})
        assert small.status_code == 201, small.text
        # Over Convo's 25 MB: Convo's JSON error, not an nginx error page.
        big = api.post(f"/api/threads/{thread['id']}/attachments",
                       files={"file": ("big.txt", b"x" * (26 * 1024 * 1024), "text/plain")})
        assert big.status_code == 413 and big.json()["error"]["code"] == "file_too_large", big.text[:300]
    finally:
        api.close()


@pytest.mark.slow
def test_behind_nginx_several_processes_serve_one_answer(cluster, tmp_path: Path) -> None:
    """Scale mode behind the shipped config with two `convo serve` upstreams and no sticky sessions:
    whichever process nginx picks, a follower and a reconnect get the same answer, whole and in order."""
    process, url = start_nginx(tmp_path, [server.port for server in cluster.servers])
    api = Api(url)
    api.signup(f"nginx-scale-{os.getpid()}-{time.monotonic_ns()}@example.com")
    try:
        thread = api.thread()
        words = " ".join(f"w{i}" for i in range(30))
        for _ in range(4):  # the answer starts on one process or the other; follow-ups land on either
            first = api.send(thread["id"], "[[fake tokens=30 interval=0.03]]", stop_after=6)
            message_id = first.events[0].data["assistant_message"]["id"]
            rest = api.follow(message_id, after=first.ids[-1])
            assert first.ids + rest.ids == list(range(1, rest.ids[-1] + 1))
            assert first.text + rest.text == words and rest.last.event == "done"
            again = api.follow(message_id, after=0)
            assert again.text == words and again.last.event == "done"
    finally:
        api.close()
        process.terminate()
        process.wait(10)
