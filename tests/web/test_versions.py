"""Versions in a real Chromium: arrows between versions, inline edits, regenerate with another model,
the diff modal, and branching into a new chat."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.web.test_chat import answers, send, sign_up

pytestmark = pytest.mark.browser


def questions(page):
    return page.get_by_role("article", name="You")


@pytest.mark.postgres_smoke
def test_versions_edit_regenerate_compare_and_branch(browser):
    page = browser.page
    sign_up(page)
    send(page, "hello there")
    answer = answers(page).last
    expect(answer.locator(".answer")).to_have_text("You said: hello there")
    expect(answer.get_by_role("button", name="Previous version")).to_have_count(0)  # one version: no arrows

    # Regenerate with another model from the menu, by keyboard.
    answer.get_by_role("button", name="Regenerate").click()
    menu = page.get_by_role("menu", name="Regenerate with")
    expect(menu.get_by_role("menuitem").first).to_be_focused()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(menu.get_by_role("menuitem", name="Fake mini")).to_be_focused()
    page.keyboard.press("Enter")
    expect(answers(page)).to_have_count(1)
    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer.get_by_label("Version 2 of 2")).to_be_visible()
    expect(answer.get_by_label("Answer details")).to_contain_text("fake-mini")

    # The arrows step back and forth (and are reachable by keyboard).
    answer.get_by_role("button", name="Previous version").focus()
    page.keyboard.press("Enter")
    expect(answer.get_by_label("Version 1 of 2")).to_be_visible()
    expect(answer.get_by_label("Answer details")).to_contain_text("fake-gpt")
    expect(answer.get_by_role("button", name="Previous version")).to_be_disabled()
    answer.get_by_role("button", name="Next version").click()
    expect(answer.get_by_label("Version 2 of 2")).to_be_visible()

    # A hand correction of the answer: Shift+Enter adds a line, Esc cancels, Enter saves a new version.
    answer.get_by_role("button", name="Edit").click()
    editor = answer.get_by_role("textbox", name="Corrected answer")
    expect(editor).to_be_focused()
    editor.press("Escape")
    expect(editor).to_have_count(0)
    expect(answer.locator(".answer")).to_have_text("You said: hello there")
    answer.get_by_role("button", name="Edit").click()
    editor.fill("You said: hello brave new world")
    editor.press("Shift+Enter")
    editor.type("Truly.")
    expect(editor).to_have_value("You said: hello brave new world\nTruly.")
    editor.press("Enter")
    expect(answer.get_by_label("Version 3 of 3")).to_be_visible()
    expect(answer.locator(".answer")).to_contain_text("hello brave new world")

    # The diff modal: version 2 against version 3, changed words marked, side by side and inline.
    answer.get_by_role("button", name="Compare versions").click()
    modal = page.get_by_role("dialog", name="Compare versions")
    expect(modal).to_be_visible()
    expect(modal.get_by_label("From")).to_have_value(re.compile(r"\d+"))
    expect(modal.get_by_label("From").locator("option:checked")).to_have_text("Version 2 · fake-mini")
    expect(modal.get_by_label("To").locator("option:checked")).to_have_text("Version 3 · fake-mini")
    left = modal.get_by_role("region", name="Version 2 · fake-mini")
    right = modal.get_by_role("region", name="Version 3 · fake-mini")
    expect(left.locator("del")).to_have_text(["there"])
    expect(left.locator("ins")).to_have_count(0)
    expect(right.locator("ins")).to_contain_text([re.compile("brave")])
    expect(right).to_contain_text("Truly.")
    expect(right.locator("del")).to_have_count(0)
    modal.get_by_role("button", name="Inline").click()
    inline = modal.get_by_role("region", name="Inline changes")
    expect(inline.locator("del")).to_have_text(["there"])
    expect(inline.locator("ins").first).to_contain_text("brave")
    # Any two versions: 1 against 2 are the same words.
    modal.get_by_label("From").select_option(label="Version 1 · fake-gpt")
    modal.get_by_label("To").select_option(label="Version 2 · fake-mini")
    expect(modal).to_contain_text("These versions are the same.")
    page.keyboard.press("Escape")
    expect(modal).to_have_count(0)

    # Editing the question streams a fresh answer under the new version; the old branch is kept.
    question = questions(page).first
    question.get_by_role("button", name="Edit").click()
    box = question.get_by_role("textbox", name="Edited message")
    box.fill("a better question")
    box.press("Enter")
    expect(question.locator(".bubble")).to_have_text("a better question")
    expect(answer.locator(".answer")).to_have_text("You said: a better question")
    expect(answer).to_have_attribute("data-status", "complete")
    expect(question.get_by_label("Version 2 of 2")).to_be_visible()
    expect(answer.get_by_role("button", name="Previous version")).to_have_count(0)
    question.get_by_role("button", name="Previous version").click()
    expect(question.locator(".bubble")).to_have_text("hello there")
    # The branch under the old question comes back with it, on the version last worked on.
    expect(answer.get_by_label("Version 3 of 3")).to_be_visible()
    expect(answer.locator(".answer")).to_contain_text("hello brave new world")

    # Branch in new chat: a second thread holding the path up to that answer.
    first_address = page.url
    answer.get_by_role("button", name="Branch in new chat").click()
    expect(page).not_to_have_url(first_address)
    assert re.search(r"/t/\d+$", page.url)
    expect(page.get_by_role("navigation", name="Chats").get_by_role("link")).to_have_count(2)
    expect(questions(page).locator(".bubble")).to_have_text(["hello there"])
    expect(answers(page).locator(".answer")).to_contain_text(["hello brave new world"])
    send(page, "only here")
    expect(answers(page)).to_have_count(2)
    expect(answers(page).last).to_have_attribute("data-status", "complete")
    page.goto(first_address)
    expect(answers(page)).to_have_count(1)
    assert browser.page_errors == []


def test_a_question_left_without_an_answer_can_be_answered_or_followed(browser):
    """A question edited without a new answer (through the API) ends the branch: the chat offers to
    answer it, and a follow-up from the composer goes below it instead of failing."""
    page = browser.page
    sign_up(page)
    send(page, "first try")
    expect(answers(page).last).to_have_attribute("data-status", "complete")
    question_id = questions(page).first.get_attribute("data-message-id")
    status = page.evaluate("""async (id) => {
        const csrf = document.cookie.split('; ').find((c) => c.startsWith('convo_csrf='))?.split('=')[1];
        const response = await fetch(`/api/convo/messages/${id}/edit`, {
            method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
            body: JSON.stringify({content: 'second try', regenerate: false})});
        return response.status;
    }""", question_id)
    assert status == 201
    page.reload()
    expect(answers(page)).to_have_count(0)
    expect(questions(page).last).to_contain_text("Not answered yet")
    questions(page).last.get_by_role("button", name="Answer it").click()
    expect(answers(page).last.locator(".answer")).to_have_text("You said: second try")
    expect(questions(page).last).not_to_contain_text("Not answered yet")

    # Once more, and this time the user just writes on.
    page.evaluate("""async (id) => {
        const csrf = document.cookie.split('; ').find((c) => c.startsWith('convo_csrf='))?.split('=')[1];
        await fetch(`/api/convo/messages/${id}/edit`, {
            method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
            body: JSON.stringify({content: 'third try', regenerate: false})});
    }""", question_id)
    page.reload()
    expect(questions(page).last).to_contain_text("Not answered yet")
    send(page, "and also this")
    expect(questions(page).locator(".bubble")).to_have_text(["third try", "and also this"])
    expect(answers(page).last.locator(".answer")).to_have_text("You said: and also this")
    assert browser.page_errors == []
