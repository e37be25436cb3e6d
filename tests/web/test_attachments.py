"""Attachments in a real Chromium: attach by button, drop and paste; upload and indexing status; the
sources under a grounded answer (live and after a reload) and the passage each one opens; readable
refusals for unsupported and oversized files."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.web.test_chat import answers, composer, send, sign_up

pytestmark = pytest.mark.browser

FACT = ("# Reactor log\n\nThe zorblax reactor at Kettering was commissioned in 1987 by the engineer Ilse Varga, "
        "and its cooling loop runs on molten tin.\n")
OTHER = "# Recipes\n\nFold the dough twice and bake it for forty minutes at a steady heat.\n"


def files(page):
    return page.get_by_role("region", name="Files in this chat")


def drop(page, name: str, text: str, mime: str = "text/markdown") -> None:
    """Drops a file on the chat as a user dragging it from their desktop would."""
    data = page.evaluate_handle(
        """([name, text, mime]) => { const dt = new DataTransfer();
             dt.items.add(new File([text], name, {type: mime})); return dt; }""", [name, text, mime])
    target = page.locator("main")
    target.dispatch_event("dragenter", {"dataTransfer": data})
    expect(page.locator(".drop-veil")).to_be_visible()
    target.dispatch_event("dragover", {"dataTransfer": data})
    target.dispatch_event("drop", {"dataTransfer": data})
    expect(page.locator(".drop-veil")).to_have_count(0)


@pytest.mark.postgres_smoke
def test_attach_ask_and_open_the_cited_passage(browser, fake_upstream):
    page = browser.page
    sign_up(page)
    # Attached to a new chat: the chat gets its thread on the first file.
    page.get_by_label("Files to attach").set_input_files(
        files=[{"name": "reactor.md", "mimeType": "text/markdown", "buffer": FACT.encode()}])
    reactor = files(page).get_by_role("listitem", name="reactor.md")
    expect(reactor).to_have_attribute("data-status", "ready", timeout=20_000)
    expect(reactor).to_contain_text(re.compile(r"ready · 1 passage"))
    assert re.search(r"/t/\d+$", page.url)

    # Dropped and pasted files join the same list.
    drop(page, "recipes.md", OTHER)
    composer(page).focus()
    composer(page).evaluate(
        """(el, text) => { const dt = new DataTransfer();
             dt.items.add(new File([text], 'pasted.txt', {type: 'text/plain'}));
             el.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true})); }""",
        "Pasted notes: nothing about reactors here.")
    for name in ("recipes.md", "pasted.txt"):
        expect(files(page).get_by_role("listitem", name=name)).to_have_attribute("data-status", "ready", timeout=20_000)
    expect(composer(page)).to_have_value("")  # the pasted file did not land in the text

    send(page, "Who commissioned the zorblax reactor?")
    answer = answers(page).last
    sources = answer.get_by_role("region", name="Sources")
    expect(sources.get_by_role("button").first).to_have_accessible_name("Source 1: reactor.md")
    expect(answer).to_have_attribute("data-status", "complete")
    # The model saw the passage: the grounding went into its prompt.
    prompt = json.dumps(fake_upstream.requests[-1]["messages"])
    assert "Ilse Varga" in prompt

    sources.get_by_role("button", name="Source 1: reactor.md").click()
    panel = page.get_by_role("dialog", name=re.compile("reactor.md"))
    expect(panel.get_by_label("Passage")).to_contain_text("commissioned in 1987 by the engineer Ilse Varga")
    download = panel.get_by_role("link", name="Download reactor.md")
    href = download.get_attribute("href")
    assert re.fullmatch(r"/api/attachments/\d+/content", href)
    original = page.request.get(href)
    assert original.ok and original.text() == FACT
    page.keyboard.press("Escape")
    expect(panel).to_have_count(0)

    # After a reload the sources come from the saved answer.
    page.reload()
    answer = answers(page).last
    answer.get_by_role("region", name="Sources").get_by_role("button", name="Source 1: reactor.md").click()
    expect(page.get_by_role("dialog", name=re.compile("reactor.md")).get_by_label("Passage")).to_contain_text("Ilse Varga")
    page.keyboard.press("Escape")

    # Removing a file takes it out of the list and out of the next answer's sources.
    files(page).get_by_role("button", name="Remove recipes.md").click()
    expect(files(page).get_by_role("listitem", name="recipes.md")).to_have_count(0)
    page.reload()
    expect(files(page).get_by_role("listitem")).to_have_count(2)
    assert browser.page_errors == []


def test_refused_uploads_say_why(browser):
    page = browser.page
    sign_up(page)
    send(page, "a chat for files")
    expect(answers(page).last).to_have_attribute("data-status", "complete")
    picker = page.get_by_label("Files to attach")
    picker.set_input_files(files=[{"name": "tool.exe", "mimeType": "application/octet-stream",
                                   "buffer": b"MZ\x90\x00" + bytes(range(256)) * 64}])
    refused = files(page).get_by_role("listitem", name="tool.exe")
    expect(refused.get_by_role("alert")).to_contain_text(re.compile(r"\w+ \w+ \w+"))
    assert "415" not in refused.text_content()
    limit = 25 * 1024 * 1024  # CONVO_MAX_UPLOAD_MB's default, which the test server keeps
    # Made in the page: sending 25 MB through the browser's remote protocol would take seconds.
    huge_file = page.evaluate_handle(
        """size => { const dt = new DataTransfer();
             dt.items.add(new File([new Uint8Array(size).fill(97)], 'huge.txt', {type: 'text/plain'})); return dt; }""",
        limit + 1024)
    page.locator("main").dispatch_event("drop", {"dataTransfer": huge_file})
    huge = files(page).get_by_role("listitem", name="huge.txt")
    expect(huge.get_by_role("alert")).to_contain_text(re.compile(r"large|limit|MB", re.I), timeout=20_000)
    huge.get_by_role("button", name="Dismiss huge.txt").click()
    expect(huge).to_have_count(0)
    assert browser.page_errors == []
