"""The account dialog: change the password (other devices are signed out), sign out everywhere; and the
page runs under the server's Content-Security-Policy without a violation."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.web.test_chat import PASSWORD, composer, sign_up

pytestmark = pytest.mark.browser


def test_change_password_and_sign_out_everywhere(browser):
    page = browser.page
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    email = sign_up(page)
    elsewhere = httpx.post(browser.server.url + "/api/auth/login", json={"email": email, "password": PASSWORD})
    other_device = {"Authorization": f"Bearer {elsewhere.json()['token']}"}

    page.get_by_role("button", name="Account").click()
    dialog = page.get_by_role("dialog", name="Account")
    dialog.get_by_label("Current password").fill("not my password")
    dialog.get_by_label("New password").fill("a brand new secret")
    dialog.get_by_role("button", name="Change password").click()
    expect(dialog.get_by_role("alert")).to_contain_text("current password is wrong")
    dialog.get_by_label("Current password").fill(PASSWORD)
    dialog.get_by_role("button", name="Change password").click()
    expect(dialog.get_by_role("status")).to_contain_text("Password changed")
    assert httpx.get(browser.server.url + "/api/auth/me", headers=other_device).status_code == 401
    dialog.get_by_role("button", name="Close").click()
    page.reload()
    expect(composer(page)).to_be_visible()  # this browser stays signed in

    again = httpx.post(browser.server.url + "/api/auth/login", json={"email": email, "password": "a brand new secret"})
    assert again.status_code == 200
    page.get_by_role("button", name="Account").click()
    page.get_by_role("dialog", name="Account").get_by_role("button", name="Sign out everywhere").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert httpx.get(browser.server.url + "/api/auth/me",
                     headers={"Authorization": f"Bearer {again.json()['token']}"}).status_code == 401
    assert page.evaluate("document.documentElement.dataset.theme") in ("light", "dark"), "the inline script ran"
    assert violations == [] and browser.page_errors == []
