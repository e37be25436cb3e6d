"""The web app in a real Chromium: sign up, stream, stop, resume after reload, settings, safe rendering."""

from __future__ import annotations

import itertools
import os
import re
import time

from playwright.sync_api import expect

_users = itertools.count()
PASSWORD = "correct horse battery"


def sign_up(page, email: str | None = None) -> str:
    email = email or f"web{next(_users)}-{os.getpid()}-{time.monotonic_ns()}@example.com"
    page.goto("/")
    page.get_by_role("button", name="Sign up").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("navigation", name="Chats")).to_be_visible()
    return email


def composer(page):
    return page.get_by_role("textbox", name="Message")


def answers(page):
    return page.get_by_role("article", name="Assistant")


def test_sign_up_send_and_see_the_answer(browser):
    page = browser.page
    sign_up(page)
    composer(page).fill("hello there")
    composer(page).press("Enter")
    expect(answers(page).last).to_contain_text("You said: hello there")
    expect(answers(page).last).to_have_attribute("data-status", "complete")
    assert browser.page_errors == []
