"""What an upstream says about keys is redacted before Convo stores or logs it."""

from __future__ import annotations

import pytest

from convo.llm.base import UpstreamError, redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Incorrect API key provided: sk-test***********1234. You can find your API key at ...", "1234"),
        ("invalid key sk-ant-api03-AbCdEfGh1234567890", "AbCdEfGh"),
        ("project key sk-proj-Zz9_yY8-xX7wW6vV5 was revoked", "Zz9_yY8"),
        ("Incorrect API key provided: AIzaSyA1b2C3d4E5f6G7h8", "AIzaSyA1b2"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig rejected", "eyJhbGci"),
        ("token=ghp_0123456789abcdefABCDEF is not valid", "ghp_0123"),
        ("the key ****************wxyz is disabled", "wxyz"),
    ],
)
def test_key_like_strings_are_redacted(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "[redacted]" in redact(text)


@pytest.mark.parametrize("text", [
    "This model's maximum context length is 8192 tokens; you asked for 9000 max_tokens.",
    "invalid x-api-key",
    "Rate limit reached for gpt-4o-mini on requests per min.",
])
def test_ordinary_error_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_upstream_errors_are_redacted_as_they_are_made() -> None:
    error = UpstreamError("The model server failed: bad key sk-live-abcdef123456", code="upstream_error")
    assert error.message == "The model server failed: bad key [redacted]"
    assert error.to_dict()["message"] == error.message
