"""Schemathesis over the server's own /openapi.json, signed in: every operation, a bounded number of
generated requests each, and no 5xx nor a response that breaks the schema the document gives it.

A new route is covered the day it is added. Some generated ids name real objects of the user's
(a thread with versions of an answer, an attachment, an export job), so the fuzzer gets past 404s.
Each operation is a subtest of its own, so one run names every operation that fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.api.owned import Owned, make_owned, plain_user
from tests.conftest import Server
from tests.support import Api

# Ending the session under test, or changing its password, would turn every later request into a 401.
SKIPPED = re.compile(r"^POST /api/auth/(logout|logout-all|password)$")


def error_shape(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every 4xx leaves as `{"error": {"code", "message", ...}}` (api/errors.py), whatever raised it."""
    if 400 <= response.status_code < 500:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        assert isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str), (
            f"{response.status_code} without the error shape: {response.text[:300]}")


CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, error_shape]
EXAMPLES = 20  # per operation: a run takes well under a minute per database

# Known failures: "METHOD /path" -> why, and where the fix belongs. Such an operation still runs; it
# is reported as xfailed while it fails, and as a failure once it passes (then remove it here).
KNOWN_FAILURES: dict[str, str] = {}

SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same requests on every run
    database=None,
    deadline=None,
    # No shrinking: a failure's request is reported as found, and the run stays bounded.
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    suppress_health_check=list(hypothesis.HealthCheck),
    report_multiple_bugs=False,
)


@pytest.fixture
def fuzzed_user(server: Server) -> Iterator[Owned]:
    # Not an admin: the admin routes then answer 403, and the fuzzer cannot disable other tests' users.
    api = plain_user(server)
    yield make_owned(api)
    api.close()


def cases(operation: schemathesis.APIOperation, real_ids: dict[str, Any]) -> st.SearchStrategy:
    """Valid requests, valid requests aimed at the user's own objects, and invalid requests."""
    strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    names = {p.name for p in operation.path_parameters}
    mine = {name: value for name, value in real_ids.items() if name in names}
    if mine:
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=mine))
    return st.one_of(strategies)


def test_no_server_error_nor_schema_break(server: Server, fuzzed_user: Owned, subtests: pytest.Subtests) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    # An address of the fuzzer's own (uvicorn takes it from 127.0.0.1): its failed log-ins count there,
    # not against 127.0.0.1, where the other tests on this shared server would find logging in locked.
    headers = {**fuzzed_user.api.headers, "X-Forwarded-For": "127.0.0.99"}
    # Deletions last, so the other operations still find the user's objects; and in reverse order of
    # the document, so an attachment goes before the thread that holds it.
    found = [result.ok() for result in schema.get_all_operations()]
    operations = sorted(found, key=lambda op: (op.method == "delete", -found.index(op) if op.method == "delete" else 0))
    assert len(operations) > 30, "the document should list every route"
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        if SKIPPED.match(label):
            continue

        @SETTINGS
        @hypothesis.given(case=cases(operation, fuzzed_user.path_ids))
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS, timeout=15)

        with subtests.test(msg=label):
            known = KNOWN_FAILURES.get(label)
            if known is None:
                fuzz()
                continue
            try:
                fuzz()
            except Exception:
                pytest.xfail(known)
            pytest.fail(f"{label} no longer fails: remove it from KNOWN_FAILURES")


# What the fuzzer found, pinned down as plain requests.

def test_found_ids_past_32_bits_are_422_not_500(api: Api) -> None:
    # Ids are 32-bit INTEGER columns on PostgreSQL: a larger id used to overflow in the driver (500).
    thread = api.thread()
    for method, path, kwargs in [
        ("GET", f"/api/threads/{2**31}", {}),
        ("DELETE", f"/api/attachments/{61812314674}", {}),
        ("POST", f"/api/threads/{thread['id']}/switch", {"json": {"message_id": 2**31}}),
        ("POST", f"/api/threads/{thread['id']}/messages", {"json": {"content": "x", "attachment_ids": [2**40]}}),
        ("POST", "/api/rag/search", {"json": {"q": "x", "attachment_ids": [8291688178491]}}),
    ]:
        response = api.request(method, path, **kwargs)
        assert response.status_code == 422, (method, path, response.text)
    assert api.get(f"/api/threads/{2**31 - 1}").status_code == 404, "the largest id is still an id"


def test_found_nul_characters_are_422_on_both_databases(server: Server, api: Api) -> None:
    # PostgreSQL cannot store U+0000 in text: a NUL in a sign-up name, a title or a message was a 500 there.
    # (Search takes any query, NUL included: test_search.py.)
    thread = api.thread(title="before")
    signup = httpx.post(server.url + "/api/auth/signup",
                        json={"email": "nul-name@example.com", "password": "correct horse", "name": "a\x00b"})
    for response in [
        signup,
        api.post("/api/threads", json={"title": "a\x00b"}),
        api.patch(f"/api/threads/{thread['id']}", json={"system_prompt": "x", "title": "a\x00b"}),
        api.post(f"/api/threads/{thread['id']}/messages", json={"content": "nested \x00 NUL"}),
        api.get("/api/threads", params={"cursor": "\x00"}),
    ]:
        assert response.status_code == 422, (response.request.url, response.text)
        assert response.json()["error"]["code"] == "invalid_text"
    assert api.get(f"/api/threads/{thread['id']}").json()["title"] == "before"
    # A backslash-u in ordinary text is not a NUL.
    assert api.post("/api/threads", json={"title": "C:\\u0000 is a path"}).status_code == 201


def test_found_nul_characters_in_an_import_are_dropped_on_both_databases(api: Api) -> None:
    # A Convo export with U+0000 in a title and a message was stored as it was on SQLite and was a 500
    # on PostgreSQL, which cannot hold it in text.
    thread = api.thread(title="Owned")
    api.send(thread["id"], "What is the plan?")
    exported = api.get(f"/api/threads/{thread['id']}/export", params={"format": "json"}).text
    poisoned = exported.replace('"Owned"', '"Ow\\u0000ned"').replace("What is the plan?", "What\\u0000 is the plan?")
    response = api.post("/api/import", files={"file": ("chat.json", poisoned.encode(), "application/json")})
    assert response.status_code in (200, 201), response.text
    imported = api.get(f"/api/threads/{response.json()['threads'][0]['id']}").json()
    assert imported["title"] == "Owned" and imported["messages"][0]["content"] == "What is the plan?"


def test_found_a_method_a_route_lacks_is_405_with_allow(server: Server, api: Api) -> None:
    # The JSON error handler dropped the Allow header of a 405, and the web app, mounted at "/", answered
    # for an API route a method it lacks (404 or a 405 allowing GET).
    document = httpx.get(server.url + "/openapi.json").json()
    for path, item in document["paths"].items():
        declared = {method.upper() for method in item if method in ("get", "put", "post", "patch", "delete")}
        url = re.sub(r"\{[^}]+\}", "1", path)
        response = api.request("TRACE", url)
        assert response.status_code == 405, (path, response.status_code, response.text)
        assert response.json()["error"]["code"] == "method_not_allowed"
        # Starlette's Allow names the methods of the first route on the path (GET and POST /api/threads
        # are two routes), so: present, and only methods the path has.
        allowed = {m.strip() for m in response.headers.get("allow", "").split(",")} - {""}
        assert allowed and allowed <= declared | {"HEAD"}, (path, declared, response.headers.get("allow"))
