"""The Ctrl+K search palette in a real Chromium: results as you type, grouped by chat and highlighted,
keyboard navigation, and Enter opening the message on its own branch."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.web.test_chat import answers, send, sign_up

pytestmark = pytest.mark.browser


@pytest.mark.postgres_smoke
def test_palette_finds_grouped_highlighted_results_and_opens_the_message_on_its_branch(browser):
    page = browser.page
    sign_up(page)
    send(page, "tell me about quasar magnets")
    expect(answers(page).last).to_have_attribute("data-status", "complete")
    question = page.get_by_role("article", name="You").first
    target = question.get_attribute("data-message-id")
    first_chat = page.url
    # A second version of the question: the first one is no longer on the active branch.
    question.get_by_role("button", name="Edit").click()
    question.get_by_role("textbox", name="Edited message").fill("something else entirely")
    question.get_by_role("textbox", name="Edited message").press("Enter")
    expect(question.locator(".bubble")).to_have_text("something else entirely")
    expect(answers(page).last).to_have_attribute("data-status", "complete")

    page.get_by_role("button", name="+ New chat").click()
    send(page, "a quasar in another chat")
    expect(answers(page).last).to_have_attribute("data-status", "complete")

    page.keyboard.press("Control+k")
    palette = page.get_by_role("dialog", name="Search chats")
    box = palette.get_by_role("combobox", name="Search chats")
    expect(box).to_be_focused()
    box.press_sequentially("quas", delay=30)
    box.press_sequentially("ar")
    results = palette.get_by_role("listbox")
    groups = results.get_by_role("group")
    expect(groups).to_have_count(2)
    expect(results.locator("[cmdk-group-heading]")).to_contain_text(["quasar", "quasar"])
    marks = results.locator("mark")
    expect(marks.first).to_have_text(re.compile("quasar", re.I))
    options = results.get_by_role("option")
    expect(options.first).to_have_attribute("aria-selected", "true")
    count = options.count()
    assert count >= 3  # both questions and both answers that repeat them
    # Move with the arrow keys to the old version of the first question.
    target_option = results.locator(f'[cmdk-item][data-message-id="{target}"]')
    expect(target_option).to_contain_text("tell me about")
    for _ in range(count):
        if target_option.get_attribute("aria-selected") == "true":
            break
        page.keyboard.press("ArrowDown")
    expect(target_option).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Enter")

    expect(palette).to_have_count(0)
    expect(page).to_have_url(first_chat)
    opened = page.locator(f'article[data-message-id="{target}"]')
    expect(opened.locator(".bubble")).to_have_text("tell me about quasar magnets")
    expect(opened).to_have_class(re.compile("highlighted"))
    expect(opened.get_by_label("Version 1 of 2")).to_be_visible()
    expect(answers(page).last.locator(".answer")).to_have_text("You said: tell me about quasar magnets")
    expect(opened).to_be_in_viewport()

    # Esc closes; the button opens it too; nothing found says so.
    page.get_by_role("button", name=re.compile("^Search")).click()
    expect(palette).to_be_visible()
    palette.get_by_role("combobox", name="Search chats").fill("zzxqv nothing like it")
    expect(palette).to_contain_text("Nothing found")
    page.keyboard.press("Escape")
    expect(palette).to_have_count(0)

    # Esc that closes the palette does not also stop an answer being written.
    send(page, "[[fake tokens=40 interval=0.05]]")
    expect(answers(page).last).to_contain_text("w2")
    page.keyboard.press("Control+k")
    expect(palette).to_be_visible()
    page.keyboard.press("Escape")
    expect(palette).to_have_count(0)
    expect(answers(page).last).to_have_attribute("data-status", "complete")
    assert browser.page_errors == []


def test_palette_finds_text_inside_files_and_opens_their_chat(browser):
    page = browser.page
    sign_up(page)
    page.get_by_label("Files to attach").set_input_files(files=[{
        "name": "kettering-log.md", "mimeType": "text/markdown",
        "buffer": b"# Reactor log\n\nThe zorblax reactor at Kettering runs its cooling loop on molten tin.\n"}])
    region = page.get_by_role("region", name="Files in this chat")
    expect(region.get_by_role("listitem", name="kettering-log.md")).to_have_attribute(
        "data-status", "ready", timeout=20_000)
    file_chat = page.url
    page.get_by_role("button", name="+ New chat").click()
    send(page, "something unrelated")
    expect(answers(page).last).to_have_attribute("data-status", "complete")

    page.keyboard.press("Control+k")
    palette = page.get_by_role("dialog", name="Search chats")
    palette.get_by_role("combobox", name="Search chats").fill("zorblax")
    option = palette.get_by_role("option").first
    expect(option).to_contain_text("File")
    expect(option).to_contain_text("kettering-log.md")
    expect(option.locator("mark")).to_have_text("zorblax")
    page.keyboard.press("Enter")
    expect(palette).to_have_count(0)
    expect(page).to_have_url(file_chat)
    expect(region.get_by_role("listitem", name="kettering-log.md")).to_be_visible()
    assert browser.page_errors == []
