"""Browser tests: Debian's Chromium driven by Playwright against a real `convo serve` with the built web app.

They run on the SQLite server, and a smoke set (marked `postgres_smoke`) on PostgreSQL too. With CI=true
a missing Chromium is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CI, ROOT, Server

WEB = ROOT / "web"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CONVO_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _web_items(items: list[pytest.Item]) -> list[pytest.Item]:
    return [item for item in items if Path(str(item.fspath)).is_relative_to(Path(__file__).parent)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    web = _web_items(items)
    # The browser exercises the web app; the API tests cover both databases. A smoke set of flows runs on
    # PostgreSQL too, so the pair is seen working together end to end.
    postgres = [item for item in web
                if getattr(item, "callspec", None) and item.callspec.params.get("backend_url") == "postgresql"
                and item.get_closest_marker("postgres_smoke") is None]
    if postgres:
        config.hook.pytest_deselected(items=postgres)
        items[:] = [item for item in items if item not in postgres]


def pytest_collection_finish(session: pytest.Session) -> None:
    # The server mounts web/dist when it starts, and the session's server may start before any browser
    # test runs: build the app now (make skips the work when nothing changed).
    if _web_items(session.items) and shutil.which("npm"):
        result = subprocess.run(["make", "-s", "-C", str(WEB), "dist"], capture_output=True, text=True)
        if result.returncode != 0:
            raise pytest.UsageError(f"building web/dist failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


# Per module, not per session: Playwright's sync API keeps an event loop running in the main thread
# while it is open, and tests elsewhere that call asyncio.run would find it there.
@pytest.fixture(scope="module")
def chromium():
    executable = chromium_path()
    if executable is None:
        message = "Chromium is not installed (scripts/ensure_test_packages.sh installs Debian's chromium)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser(chromium, server: Server) -> Iterator[Browser]:
    """A fresh browser profile (no cookies, no storage) on the server, at desktop size."""
    yield from _context(chromium, server, viewport={"width": 1280, "height": 860})


@pytest.fixture
def phone(chromium, server: Server) -> Iterator[Browser]:
    yield from _context(chromium, server, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)


def _context(chromium, server: Server, **options) -> Iterator[Browser]:
    context = chromium.new_context(base_url=server.url, **options)
    context.set_default_timeout(10_000)
    wrapper = Browser(context, server)
    yield wrapper
    context.close()


class Browser:
    """One browser profile: its pages, and what they did that a user should never see."""

    def __init__(self, context, server: Server) -> None:
        self.context = context
        self.server = server
        self.dialogs: list[str] = []
        self.page_errors: list[str] = []
        self.page = self.new_page()

    def new_page(self):
        page = self.context.new_page()
        page.on("dialog", self._on_dialog)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        return page

    def _on_dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def cookie(self, name: str) -> str | None:
        return next((c["value"] for c in self.context.cookies() if c["name"] == name), None)
