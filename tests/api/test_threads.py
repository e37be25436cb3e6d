import base64
import json


def test_create_list_get_update_delete(api):
    created = api.thread(title="  Plans  ", model="fake-mini", temperature=0.3, system_prompt="Be brief.")
    assert created["title"] == "Plans"
    assert created["model"] == "fake-mini" and created["temperature"] == 0.3
    got = api.get(f"/api/threads/{created['id']}").json()
    assert got["messages"] == [] and got["system_prompt"] == "Be brief."

    patched = api.patch(f"/api/threads/{created['id']}", json={"title": "Renamed", "temperature": 1.2})
    assert patched.status_code == 200
    assert patched.json()["title"] == "Renamed" and patched.json()["temperature"] == 1.2
    assert patched.json()["model"] == "fake-mini", "fields left out of a PATCH stay as they were"

    assert api.delete(f"/api/threads/{created['id']}").status_code == 204
    assert api.get(f"/api/threads/{created['id']}").status_code == 404


def test_list_is_newest_first_with_cursor_pagination(api):
    ids = [api.thread(title=f"t{i}")["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/threads", params=params).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids[::-1]
    # Activity moves a thread to the top.
    api.send(ids[0], "bump")
    assert api.get("/api/threads", params={"limit": 1}).json()["items"][0]["id"] == ids[0]


def test_invalid_input_is_422(api):
    assert api.post("/api/threads", json={"model": "no-such-model"}).json()["error"]["code"] == "unknown_model"
    assert api.post("/api/threads", json={"temperature": 3}).status_code == 422
    assert api.post("/api/threads", json={"title": "x" * 301}).status_code == 422
    assert api.get("/api/threads", params={"cursor": "%%%not-a-cursor"}).status_code == 422
    # Cursors are opaque, but a client can still forge one: a naive time, an id past 64 bits.
    for forged in (["2026-01-01T00:00:00", 1], ["2026-01-01T00:00:00+00:00", 2**64]):
        cursor = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
        answer = api.get("/api/threads", params={"cursor": cursor})
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_cursor", forged
    assert api.get("/api/threads", params={"limit": 0}).status_code == 422
    assert api.get("/api/threads/not-a-number").status_code == 422
    assert api.get("/api/threads/99999999").status_code == 404
    assert api.get("/api/threads/99999999999999999999999").status_code == 422, "no integer overflow in the driver"
    assert api.post("/api/convo/messages/0/cancel").status_code == 422
    missing = api.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_another_users_objects_answer_404(server, api):
    thread = api.thread(title="mine")
    stream = api.send(thread["id"], "secret")
    answer_id = stream.last.data["message"]["id"]
    user_msg_id = stream.events[0].data["user_message"]["id"]

    intruder = server.api()
    tid = thread["id"]
    for method, path, body in [
        ("GET", f"/api/threads/{tid}", None),
        ("PATCH", f"/api/threads/{tid}", {"title": "pwned"}),
        ("DELETE", f"/api/threads/{tid}", None),
        ("POST", f"/api/threads/{tid}/switch", {"message_id": answer_id}),
        ("POST", f"/api/threads/{tid}/messages", {"content": "hi"}),
        ("GET", f"/api/convo/messages/{answer_id}/stream", None),
        ("POST", f"/api/convo/messages/{answer_id}/cancel", None),
    ]:
        response = intruder.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    assert intruder.get("/api/threads").json()["items"] == []
    # Nor can the intruder graft a branch onto it from a thread of their own.
    own = intruder.thread()
    grafted = intruder.post(f"/api/threads/{own['id']}/messages", json={"content": "x", "parent_id": user_msg_id})
    assert grafted.status_code == 404
    assert api.get(f"/api/threads/{tid}").json()["title"] == "mine"
