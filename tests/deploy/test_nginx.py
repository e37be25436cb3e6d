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


@pytest.fixture
def proxy(server: Server, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        if CI:
            pytest.fail("nginx is required in CI (scripts/ensure_test_packages.sh installs it)")
        pytest.skip("nginx is not installed")
    port = free_port()
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{server.port};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    temp = " ".join(f"{kind}_temp_path {tmp_path / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = tmp_path / "nginx.conf"
    config.write_text(
        ("user root;\n" if os.getuid() == 0 else "")
        + f"worker_processes 1;\npid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\n"
        + f"events {{ worker_connections 256; }}\nhttp {{\naccess_log off;\n{temp}\n{site}\n}}\n"
    )
    process = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(config), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "error.log").read_text())
            time.sleep(0.05)
        yield url
    finally:
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
