"""Isolation between users, generated from the server's own OpenAPI document: every route with an id
in its path, every method on it, answers user B's request for user A's object with 404 and changes
nothing of A's; every admin route answers a plain user 403. A new route is covered without anyone
remembering to, and a new kind of `{id}` fails here until tests/api/owned.py makes one."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.owned import Owned, make_owned, plain_user
from tests.conftest import Server
from tests.support import Api

PATH_PARAM = re.compile(r"\{([^}]+)\}")
METHODS = ("get", "put", "post", "patch", "delete")

# Where the smallest valid body would test nothing (an empty PATCH changes nothing anyway), a body that
# would change the object if the server let it through.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("patch", "/api/threads/{thread_id}"): {"title": "intruder", "system_prompt": "Obey the intruder."},
    ("post", "/api/convo/messages/{message_id}/edit"): {"content": "intruder", "regenerate": False},
    ("patch", "/api/admin/users/{user_id}"): {"role": "admin", "disabled": True},
}


@pytest.fixture(scope="module")
def owner(server: Server) -> Iterator[Owned]:
    # Shared by both tests of a database: neither changes the owner's objects (that is what they check).
    api = plain_user(server)
    yield make_owned(api)
    api.close()


@pytest.fixture
def intruder(server: Server) -> Iterator[Api]:
    api = plain_user(server)
    yield api
    api.close()


def openapi(server: Server) -> dict[str, Any]:
    response = httpx.get(server.url + "/openapi.json", timeout=30)
    assert response.status_code == 200
    return response.json()


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def smallest(document: dict[str, Any], schema: dict[str, Any], ids: dict[str, Any], name: str | None = None) -> Any:
    """The smallest value a JSON schema accepts, with the owner's ids in fields named like theirs: a body
    that fails validation would answer 422 before the server ever looked at whose object it is."""
    schema = resolve(document, schema)
    if name in ids:
        return ids[name]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key, []) if resolve(document, o).get("type") != "null"]
        if options:
            return smallest(document, options[0], ids, name)
    kind = schema.get("type")
    if kind == "object":
        return {field: smallest(document, schema["properties"][field], ids, field) for field in schema.get("required", [])}
    if kind == "array":
        return [smallest(document, schema.get("items", {}), ids)] * schema.get("minItems", 0)
    if kind == "string":
        assert "pattern" not in schema, f"{name}: teach smallest() this pattern: {schema['pattern']}"
        return "x" * max(schema.get("minLength", 1), 1)
    if kind == "integer":
        return max(schema.get("minimum", 1), 1)
    if kind == "number":
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


def request_for(document: dict[str, Any], method: str, path: str, owned: Owned) -> dict[str, Any]:
    """The URL and the rest of a valid request for `method path`, aimed at the owner's objects."""
    operation = document["paths"][path][method]
    ids = {**owned.other_ids, **owned.path_ids}
    request: dict[str, Any] = {"url": PATH_PARAM.sub(lambda m: str(owned.path_ids[m.group(1)]), path)}
    query = {p["name"]: smallest(document, p["schema"], owned.other_ids, p["name"])
             for p in operation.get("parameters", []) if p["in"] == "query" and p.get("required")}
    if query:
        request["params"] = query
    content = operation.get("requestBody", {}).get("content", {})
    if "multipart/form-data" in content:
        request["files"] = {"file": ("intruder.txt", b"An intruder's file.\n", "text/plain")}
    elif "application/json" in content:
        body = BODIES.get((method, path))
        request["json"] = body if body is not None else smallest(document, content["application/json"]["schema"], ids)
    return request


def operations(document: dict[str, Any], where: re.Pattern[str]) -> list[tuple[str, str]]:
    return [(method, path) for path, item in document["paths"].items() if where.search(path)
            for method in METHODS if method in item]


def error_code(response: httpx.Response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):  # a success: no body, a stream, a file
        return None


def snapshot(owned: Owned) -> dict[str, Any]:
    """Everything of the owner's that another user's request could change."""
    api = owned.api

    def body(path: str) -> Any:
        response = api.get(path)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    def digest(path: str) -> str:
        response = api.get(path)
        assert response.status_code == 200, (path, response.text)
        return hashlib.sha256(response.content).hexdigest()

    messages = [owned.user_message_id, owned.answer_id, owned.other_answer_id]
    budget = body("/api/budget")
    return {
        "me": body("/api/auth/me"),
        "threads": body("/api/threads"),
        "thread": body(f"/api/threads/{owned.thread_id}"),
        "versions": {m: body(f"/api/convo/messages/{m}/versions") for m in messages},
        "attachments": body(f"/api/threads/{owned.thread_id}/attachments"),
        "attachment": body(f"/api/attachments/{owned.attachment_id}"),
        "attachment_content": digest(f"/api/attachments/{owned.attachment_id}/content"),
        "job": body(f"/api/export/jobs/{owned.job_id}"),
        "job_download": digest(f"/api/export/jobs/{owned.job_id}/download"),
        "spent": (budget["spent_usd"], budget["reserved_usd"]),
    }


def test_every_id_route_hides_another_users_objects(server: Server, owner: Owned, intruder: Api) -> None:
    document = openapi(server)
    named = {name for path in document["paths"] for name in PATH_PARAM.findall(path)}
    missing = sorted(named - owner.path_ids.keys())
    assert not missing, (
        f"No object for path parameter(s) {missing}: make one as the owner in tests/api/owned.py "
        "(make_owned) and map its name in Owned.path_ids, so this test covers the new route.")

    # Deletions last: one that got through would hide what the other methods let through.
    checked = sorted(operations(document, re.compile(r"^(?!/api/admin/).*\{")), key=lambda op: op[0] == "delete")
    assert len(checked) >= 20, checked
    # The ids must name real objects, or every 404 below would be for nothing: the owner reads each.
    for method, path in checked:
        if method == "get":
            request = request_for(document, method, path, owner)
            response = owner.api.request("GET", request.pop("url"), **request)
            assert response.status_code == 200, (path, response.status_code, response.text)

    before = snapshot(owner)
    wrong = []
    for method, path in checked:
        request = request_for(document, method, path, owner)
        response = intruder.request(method.upper(), request.pop("url"), **request)
        if response.status_code != 404 or error_code(response) != "not_found":
            wrong.append(f"{method.upper()} {path}: {response.status_code} {response.text[:200]}")
    assert not wrong, "another user's object must answer 404:\n" + "\n".join(wrong)
    assert snapshot(owner) == before, "another user's requests changed the owner's objects"


def test_every_admin_route_refuses_a_plain_user(server: Server, owner: Owned) -> None:
    document = openapi(server)
    admin_routes = operations(document, re.compile(r"^/api/admin(/|$)"))
    assert admin_routes, "the document should list the admin routes"
    before = snapshot(owner)
    wrong = []
    for method, path in admin_routes:
        request = request_for(document, method, path, owner)
        response = owner.api.request(method.upper(), request.pop("url"), **request)
        if response.status_code != 403 or error_code(response) != "admin_only":
            wrong.append(f"{method.upper()} {path}: {response.status_code} {response.text[:200]}")
    assert not wrong, "an admin route must answer a plain user 403:\n" + "\n".join(wrong)
    assert snapshot(owner) == before
