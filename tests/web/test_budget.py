"""The daily budget in a real Chromium: today's spending in the chat settings, and a refused answer that
says why and keeps what the user wrote."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.api.test_budget import set_budget
from tests.web.test_chat import answers, composer, send, sign_up

pytestmark = pytest.mark.browser


def test_settings_show_todays_spending_and_a_refusal_keeps_the_draft(browser, admin):
    page = browser.page
    sign_up(page)
    me = page.evaluate("fetch('/api/auth/me').then((r) => r.json())")
    set_budget(admin, me["id"], 0.05)

    send(page, "hello [[fake reply='Hi.']]")
    expect(answers(page).last).to_have_attribute("data-status", "complete")
    page.get_by_role("button", name=re.compile("^Settings: ")).click()
    line = page.get_by_role("status", name="Today's spending")
    expect(line).to_contain_text(re.compile(r"Today: \$0\.0\d+ of \$0\.05 · \$0\.0\d+ left · resets at"))

    # 4,096 answer tokens of fake-gpt could cost $0.033: with $0.02 left the answer is refused up front.
    set_budget(admin, me["id"], 0.02)
    send(page, "write me a long essay")
    expect(page.get_by_role("alert")).to_contain_text("today's budget")
    expect(composer(page)).to_have_value("write me a long essay")
    expect(answers(page)).to_have_count(1)
    assert browser.page_errors == []

