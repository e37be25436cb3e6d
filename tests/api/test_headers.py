"""Security headers on every response, and the /metrics token."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, Server, make_env
from tests.fakes.upstream import FakeUpstream

INDEX = ROOT / "web" / "dist" / "index.html"
FIXED = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}


class InlineScripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self._inline = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script" and "src" not in dict(attrs):
            self._inline = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._inline = False

    def handle_data(self, data: str) -> None:
        if self._inline:
            self.scripts[-1] += data


def assert_secured(response: httpx.Response) -> str:
    for name, value in FIXED.items():
        assert response.headers.get(name) == value, (response.url, name)
    csp = response.headers["content-security-policy"]
    for directive in ("default-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'",
                      "connect-src 'self'", "img-src 'self' data:"):
        assert directive in csp
    return csp


def test_html_and_json_responses_carry_the_security_headers(server):
    if not INDEX.exists():
        pytest.skip("web/dist is not built")
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = assert_secured(page)
    parser = InlineScripts()
    parser.feed(page.text)
    assert parser.scripts, "the page has its inline theme script"
    for script in parser.scripts:  # allowed by its hash, and nothing else inline
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]

    assert_secured(httpx.get(server.url + "/t/12"))  # a client-side route, served as the page
    unauthorized = httpx.get(server.url + "/api/auth/me")
    assert unauthorized.status_code == 401
    assert_secured(unauthorized)
    assert_secured(httpx.get(server.url + "/healthz"))


def test_downloads_keep_their_own_sandbox_policy(api):
    thread = api.thread()
    uploaded = api.post(f"/api/threads/{thread['id']}/attachments",
                        files={"file": ("notes.txt", b"plain words", "text/plain")})
    assert uploaded.status_code == 201, uploaded.text
    content = api.get(f"/api/attachments/{uploaded.json()['id']}/content")
    assert content.status_code == 200
    assert content.headers["content-security-policy"] == "sandbox"
    assert content.headers["x-content-type-options"] == "nosniff"
    assert content.headers["x-frame-options"] == "DENY"


@pytest.fixture
def metrics_server(fake_upstream: FakeUpstream, tmp_path: Path) -> Iterator[Server]:
    """SQLite only: the check happens before any database is involved."""
    srv = Server(tmp_path, make_env(tmp_path, fake_upstream, None, CONVO_METRICS_TOKEN="scrape-me")).start()
    yield srv
    srv.stop()


def test_metrics_need_the_bearer_token_when_one_is_set(metrics_server):
    url = metrics_server.url + "/metrics"
    anonymous = httpx.get(url)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    assert httpx.get(url, headers={"Authorization": "Bearer scrape-mE"}).status_code == 401
    scraped = httpx.get(url, headers={"Authorization": "Bearer scrape-me"})
    assert scraped.status_code == 200 and "convo_http_request_duration_seconds" in scraped.text
