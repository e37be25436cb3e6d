"""Chats in and out through the chat list in a real Chromium: downloads the browser saves under the name
the server gives, and imports that open the imported chat."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.web.test_chat import answers, send, sign_up

pytestmark = pytest.mark.browser


def test_a_chat_downloads_as_markdown_and_json(browser):
    page = browser.page
    sign_up(page)
    send(page, "pack the lanterns [[fake reply='Lanterns packed.']]")
    expect(answers(page).last).to_have_attribute("data-status", "complete")
    chats = page.get_by_role("navigation", name="Chats")
    # The list shows "New chat" until the first message names the chat.
    expect(chats.locator(".thread-title").first).to_have_text(re.compile("^pack the lanterns"))
    title = chats.locator(".thread-title").first.inner_text()

    chats.get_by_label(f"Download {title}", exact=True).click()
    menu = chats.get_by_role("group", name=f"Download {title} as")
    with page.expect_download() as markdown:
        menu.get_by_role("link", name="Markdown").click()
    assert markdown.value.suggested_filename.endswith(".md")
    text = open(markdown.value.path(), encoding="utf-8").read()
    assert "## You" in text and "Lanterns packed." in text

    with page.expect_download() as document:
        menu.get_by_role("link", name="JSON, every version").click()
    body = json.loads(open(document.value.path(), encoding="utf-8").read())
    assert body["format"] == "convo.thread" and len(body["messages"]) == 2
    assert browser.page_errors == []


def test_chats_import_from_a_chatgpt_file_and_open(browser):
    from tests.api.test_imports import chatgpt_export

    page = browser.page
    sign_up(page)
    chats = page.get_by_role("navigation", name="Chats")
    chats.get_by_label("Chats to import").set_input_files(files=[{
        "name": "conversations.json", "mimeType": "application/json",
        "buffer": json.dumps(chatgpt_export()[:1]).encode()}])
    expect(chats.get_by_role("status")).to_have_text("Imported 1 chat.")
    expect(chats.get_by_role("link", name="Lighthouse facts")).to_be_visible()
    expect(answers(page).last).to_contain_text("Built in 1874.")
    expect(page.get_by_label("Version 2 of 2")).to_be_visible()

    chats.get_by_label("Chats to import").set_input_files(files=[{
        "name": "notes.json", "mimeType": "application/json", "buffer": b'{"not": "an export"}'}])
    expect(chats.get_by_role("alert")).to_contain_text("neither a Convo export")
    assert browser.page_errors == []
