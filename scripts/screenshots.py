"""Screenshots of the web app's main screens, light and dark, desktop and phone, into docs/screenshots/.

Starts the fake model server and a `convo serve` of its own (SQLite, in a temporary folder), builds the
web app if needed, and drives Debian's Chromium. Run: .venv/bin/python scripts/screenshots.py
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.conftest import Server, make_env  # noqa: E402
from tests.fakes.upstream import FakeUpstream  # noqa: E402
from tests.web.conftest import LAUNCH_ARGS, chromium_path  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
# The fake model server answers with this (it must not contain "]]", which ends the fake's directive).
ANSWER = """Here is a small **Python** helper and how it behaves:

```python
def chunks(items, size):
    # Yield successive slices of `size` items.
    for start in range(0, len(items), size):
        yield items[start:start + size]
```

| call | result |
|---|---|
| `list(chunks((1, 2, 3), 2))` | `[(1, 2), (3,)]` |
| `list(chunks((), 4))` | `[]` |

Raw HTML such as <img src=x onerror=alert(1)> is shown as text, never run."""


def main() -> None:
    subprocess.run(["make", "-s", "-C", str(ROOT / "web"), "dist"], check=True)
    executable = chromium_path()
    if executable is None:
        sys.exit("Chromium is missing: run scripts/ensure_test_packages.sh")
    OUT.mkdir(parents=True, exist_ok=True)
    fake = FakeUpstream().start()
    with tempfile.TemporaryDirectory(prefix="convo-shots") as tmp:
        server = Server(Path(tmp), make_env(Path(tmp), fake, None)).start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
                shoot(browser, server.url)
                shoot_features(browser, server.url)
                browser.close()
        finally:
            server.stop()
            fake.stop()


def shoot(browser, url: str) -> None:
    desktop = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800}, color_scheme="light")
    page = desktop.new_page()
    page.goto("/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.screenshot(path=OUT / "login-light.png")

    page.get_by_role("button", name="Sign up").click()
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign up").click()
    box = page.get_by_role("textbox", name="Message")
    for question in ("Plan a three-day trip to Lisbon", "What is a monad, briefly?"):
        box.fill(question)
        box.press("Enter")
        expect(page.get_by_role("article", name="Assistant").last).to_have_attribute("data-status", "complete")
        page.get_by_role("button", name="+ New chat").click()
    box.fill(f"Write a Python function that splits a list into chunks [[fake reply='{ANSWER}']]")
    box.press("Enter")
    expect(page.get_by_role("article", name="Assistant").last).to_have_attribute("data-status", "complete")
    box.fill("Thanks! Could you add type hints?")
    expect(page.locator(".token-count")).to_have_text(re.compile(r"^[1-9]\d* tokens"))
    page.screenshot(path=OUT / "chat-light.png")

    page.get_by_role("button", name="Use dark theme").click()
    page.screenshot(path=OUT / "chat-dark.png")
    page.get_by_role("button", name=re.compile("^Settings")).click()
    page.screenshot(path=OUT / "settings-dark.png")
    address = page.url
    cookies = desktop.cookies()
    desktop.close()

    for theme in ("light", "dark"):
        phone = browser.new_context(base_url=url, viewport={"width": 390, "height": 844}, is_mobile=True,
                                    has_touch=True, device_scale_factor=2)
        phone.add_cookies(cookies)
        phone.add_init_script(f"localStorage.setItem('convo.theme', '{theme}')")
        page = phone.new_page()
        page.goto(address)
        expect(page.get_by_role("article", name="Assistant").last).to_have_attribute("data-status", "complete")
        page.screenshot(path=OUT / f"phone-chat-{theme}.png")
        page.get_by_role("button", name="Open chat list").click()
        page.wait_for_timeout(300)  # the drawer slides in
        page.screenshot(path=OUT / f"phone-sidebar-{theme}.png")
        phone.close()
    print(f"screenshots in {OUT.relative_to(ROOT)}")


REACTOR = """# Kettering reactor log

The zorblax reactor at Kettering was commissioned in 1987 by the engineer Ilse Varga. Its cooling loop
runs on molten tin, and it is inspected every spring.
"""


def shoot_features(browser, url: str) -> None:
    """The diff modal, the search palette and an answer with its sources."""
    context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800}, color_scheme="light")
    page = context.new_page()
    page.goto("/")
    page.get_by_role("button", name="Sign up").click()
    page.get_by_label("Email").fill("grace@example.com")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign up").click()
    box = page.get_by_role("textbox", name="Message")
    answer = page.get_by_role("article", name="Assistant").last

    first = ("Lisbon in three days: day one the Alfama and the castle, day two Belém and its tower, "
             "day three a train to Sintra for the palaces.")
    box.fill(f"Plan a short trip to Lisbon [[fake reply='{first}']]")
    box.press("Enter")
    expect(answer).to_have_attribute("data-status", "complete")
    answer.get_by_role("button", name="Edit").click()
    editor = answer.get_by_role("textbox", name="Corrected answer")
    editor.fill("Lisbon in three days: day one the Alfama and the São Jorge castle, day two Belém and the "
                "Jerónimos monastery, day three a day trip to Sintra for the Pena palace.")
    editor.press("Enter")
    expect(answer.get_by_label("Version 2 of 2")).to_be_visible()
    answer.get_by_role("button", name="Compare versions").click()
    modal = page.get_by_role("dialog", name="Compare versions")
    expect(modal.locator("ins").first).to_be_visible()
    page.screenshot(path=OUT / "diff-modal-light.png")
    page.keyboard.press("Escape")

    page.get_by_role("button", name="+ New chat").click()
    box.fill("Which castle should we see first in Lisbon?")
    box.press("Enter")
    expect(answer).to_have_attribute("data-status", "complete")
    page.keyboard.press("Control+k")
    palette = page.get_by_role("dialog", name="Search chats")
    palette.get_by_role("combobox").fill("castle lisbon")
    expect(palette.locator("mark").first).to_be_visible()
    page.screenshot(path=OUT / "search-palette-light.png")
    page.keyboard.press("Escape")

    page.get_by_role("button", name="+ New chat").click()
    page.get_by_label("Files to attach").set_input_files(
        files=[{"name": "reactor-log.md", "mimeType": "text/markdown", "buffer": REACTOR.encode()}])
    expect(page.get_by_role("listitem", name="reactor-log.md")).to_have_attribute("data-status", "ready",
                                                                                  timeout=30_000)
    reply = "It was commissioned in 1987 by the engineer Ilse Varga [1], and its cooling loop runs on molten tin [1]."
    box.fill(f"Who commissioned the zorblax reactor? [[fake reply='{reply}']]")
    box.press("Enter")
    expect(answer.get_by_role("region", name="Sources")).to_be_visible()
    expect(answer).to_have_attribute("data-status", "complete")
    page.screenshot(path=OUT / "answer-sources-light.png")
    answer.get_by_role("button", name="Source 1: reactor-log.md").click()
    expect(page.get_by_label("Passage")).to_be_visible()
    page.screenshot(path=OUT / "source-passage-light.png")
    context.close()


if __name__ == "__main__":
    main()
