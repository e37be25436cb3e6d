"""POST /api/tokens/count: the composer's live count, with the tokenizer of the model that will answer."""

from __future__ import annotations

import httpx


def count(api, **body):
    return api.post("/api/tokens/count", json=body)


def test_counts_with_the_models_tokenizer(api):
    # cl100k: "hello world" is two tokens; a real tokenizer, not a character estimate.
    got = count(api, model="fake-gpt", text="hello world")
    assert got.status_code == 200, got.text
    assert got.json() == {"model": "fake-gpt", "tokens": 2}
    longer = count(api, model="fake-gpt", text="hello world " * 50).json()["tokens"]
    assert 90 <= longer <= 110
    assert count(api, model="fake-gpt", text="").json()["tokens"] == 0


def test_omitted_model_means_the_default_and_every_provider_counts(api):
    assert count(api, text="hello world").json() == {"model": "fake-gpt", "tokens": 2}
    assert count(api, model="claude-fake", text="hello world").json()["tokens"] == 2
    # The embedded model counts with its own GGUF tokenizer.
    local = count(api, model="smollm2-135m-instruct", text="The quick brown fox jumps over the lazy dog.")
    assert local.status_code == 200 and 5 <= local.json()["tokens"] <= 20


def test_bad_input_is_a_clear_4xx(server, api):
    unknown = count(api, model="no-such-model", text="hi")
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_model"
    assert count(api, model="fake-gpt").status_code == 422
    assert count(api, model="fake-gpt", text=123).status_code == 422
    too_long = count(api, model="fake-gpt", text="x" * 200_001)
    assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "invalid_request"
    assert api.post("/api/tokens/count", content=b"not json", headers={"Content-Type": "application/json"}
                    ).status_code == 422


def test_needs_a_user_and_csrf_for_cookie_sessions(server, api):
    anonymous = httpx.post(server.url + "/api/tokens/count", json={"text": "hi"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "not_authenticated"
    with httpx.Client(base_url=server.url) as browser:
        login = browser.post("/api/auth/login", json={"email": api.user["email"], "password": "correct horse battery"})
        assert login.status_code == 200
        assert browser.post("/api/tokens/count", json={"text": "hi"}).json()["error"]["code"] == "csrf_failed"
        csrf = browser.cookies["convo_csrf"]
        ok = browser.post("/api/tokens/count", json={"text": "hi"}, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200 and ok.json()["tokens"] == 1
