"""Edit and regenerate as a version tree, switching, diffs and branching, through the API."""

import random
import time

import pytest

from tests.api.test_stream import SLOW, answer_id
from tests.support import assert_responsive


def contents(view):
    return [m["content"] for m in view["messages"]]


@pytest.mark.scale_mode  # answers generated: also with Redis streams and a worker
def test_regenerate_three_times_keeps_every_version(api, fake_upstream):
    thread = api.thread()
    tid = thread["id"]
    first = api.send(tid, "tell me [[fake reply='v1']]").last.data["message"]
    answers = [first]
    for temperature in (0.1, 0.5, 0.9):
        stream = api.stream("POST", f"/api/convo/messages/{answers[-1]['id']}/regenerate",
                            json={"temperature": temperature, "model": "fake-mini"})
        assert stream.events[0].data["user_message"]["id"] == first["parent_id"], "same question"
        answers.append(stream.last.data["message"])
        assert fake_upstream.requests[-1]["temperature"] == temperature
        assert fake_upstream.requests[-1]["model"] == "fake-mini"
    newest = answers[-1]
    assert (newest["version_index"], newest["version_count"]) == (4, 4)
    assert newest["sibling_ids"] == [a["id"] for a in answers]
    versions = api.get(f"/api/convo/messages/{first['id']}/versions").json()["items"]
    assert [v["id"] for v in versions] == [a["id"] for a in answers]
    assert [v["version_index"] for v in versions] == [1, 2, 3, 4]
    assert all(v["status"] == "complete" for v in versions)
    view = api.get(f"/api/threads/{tid}").json()
    assert view["current_leaf_id"] == newest["id"] and len(view["messages"]) == 2


@pytest.mark.scale_mode  # answers generated: also with Redis streams and a worker
def test_edit_in_the_middle_branches_and_switch_goes_back_and_forth(api):
    tid = api.thread()["id"]
    api.send(tid, "one")
    second = api.send(tid, "two").last.data["message"]
    api.send(tid, "three")
    original = api.get(f"/api/threads/{tid}").json()
    question_two = original["messages"][2]

    edited = api.stream("POST", f"/api/convo/messages/{question_two['id']}/edit", json={"content": "two, reworded"})
    new_question = edited.events[0].data["user_message"]
    assert new_question["parent_id"] == question_two["parent_id"]
    assert (new_question["version_index"], new_question["version_count"]) == (2, 2)
    assert edited.text == "You said: two, reworded"
    assert contents(api.get(f"/api/threads/{tid}").json()) == [
        "one", "You said: one", "two, reworded", "You said: two, reworded"]

    # Back to the first version: its whole subtree is still there, down to "three".
    back = api.post(f"/api/threads/{tid}/switch", json={"message_id": question_two["id"]}).json()
    assert contents(back) == contents(original)
    assert back["messages"][2]["version_index"] == 1
    forth = api.post(f"/api/threads/{tid}/switch", json={"message_id": new_question["id"]}).json()
    assert contents(forth)[-1] == "You said: two, reworded"
    unchanged = api.get(f"/api/convo/messages/{second['id']}/versions").json()["items"]
    assert [v["content"] for v in unchanged] == ["You said: two"]


def test_edit_at_the_root_makes_a_second_root(api):
    tid = api.thread()["id"]
    root = api.send(tid, "hello").events[0].data["user_message"]
    edited = api.stream("POST", f"/api/convo/messages/{root['id']}/edit", json={"content": "hi"})
    new_root = edited.events[0].data["user_message"]
    assert new_root["parent_id"] is None and new_root["sibling_ids"] == [root["id"], new_root["id"]]
    assert contents(api.get(f"/api/threads/{tid}").json()) == ["hi", "You said: hi"]


def test_edit_without_regenerating_and_hand_correcting_an_answer(api, fake_upstream):
    tid = api.thread()["id"]
    stream = api.send(tid, "question")
    question = stream.events[0].data["user_message"]
    answer = stream.last.data["message"]
    calls = len(fake_upstream.requests)

    fixed = api.post(f"/api/convo/messages/{answer['id']}/edit", json={"content": "A better answer."})
    assert fixed.status_code == 201
    fixed = fixed.json()
    assert fixed["role"] == "assistant" and fixed["parent_id"] == question["id"]
    assert (fixed["version_index"], fixed["version_count"]) == (2, 2)
    assert fixed["meta"]["edited_from"] == answer["id"]

    draft = api.post(f"/api/convo/messages/{question['id']}/edit", json={"content": "draft", "regenerate": False})
    assert draft.status_code == 201 and draft.json()["role"] == "user"
    assert len(fake_upstream.requests) == calls, "no generation for hand edits"
    # The unsent question can be answered later by regenerating under it.
    answered = api.stream("POST", f"/api/convo/messages/{draft.json()['id']}/regenerate", json={})
    assert answered.text == "You said: draft"
    assert contents(api.get(f"/api/threads/{tid}").json()) == ["draft", "You said: draft"]


def test_a_message_sent_after_a_question_edited_without_an_answer_follows_it(api, fake_upstream):
    """The chat never gets stuck: the new message goes below the unanswered question, in the order the
    user wrote them, and the answer reads both."""
    tid = api.thread()["id"]
    question = api.send(tid, "first question").events[0].data["user_message"]
    draft = api.post(f"/api/convo/messages/{question['id']}/edit", json={"content": "reworded", "regenerate": False})
    assert draft.status_code == 201, draft.text

    follow_up = api.send(tid, "and one more thing")
    assert follow_up.last.event == "done", follow_up.events
    sent = follow_up.events[0].data["user_message"]
    assert sent["parent_id"] == draft.json()["id"]
    assert [m["content"] for m in fake_upstream.requests[-1]["messages"] if m["role"] == "user"] == [
        "reworded", "and one more thing"]
    assert contents(api.get(f"/api/threads/{tid}").json()) == [
        "reworded", "and one more thing", "You said: and one more thing"]
    # An explicit parent works the same; a question that already has its answer still refuses one.
    question_two = api.post(f"/api/convo/messages/{sent['id']}/edit", json={"content": "x", "regenerate": False})
    explicit = api.send(tid, "under the draft", parent_id=question_two.json()["id"])
    assert explicit.last.event == "done"
    answered = api.post(f"/api/threads/{tid}/messages", json={"content": "no", "parent_id": sent["id"]})
    assert answered.status_code == 422 and answered.json()["error"]["code"] == "invalid_parent"


@pytest.mark.scale_mode  # answers generated: also with Redis streams and a worker
def test_edit_a_cancelled_answer_and_regenerate_it(api):
    tid = api.thread()["id"]
    first = api.send(tid, SLOW, stop_after=4)
    api.post(f"/api/convo/messages/{answer_id(first)}/cancel")
    cancelled = api.follow(answer_id(first), after=4).last.data["message"]
    assert cancelled["status"] == "cancelled"
    fixed = api.post(f"/api/convo/messages/{cancelled['id']}/edit", json={"content": "finished by hand"}).json()
    assert fixed["status"] == "complete" and fixed["sibling_ids"][0] == cancelled["id"]
    again = api.stream("POST", f"/api/convo/messages/{cancelled['id']}/regenerate", json={})
    assert again.last.data["message"]["version_index"] == 3
    versions = api.get(f"/api/convo/messages/{cancelled['id']}/versions").json()["items"]
    assert [v["status"] for v in versions] == ["cancelled", "complete", "complete"]
    assert versions[0]["content"] == cancelled["content"], "the cancelled version is untouched"


def test_diff_between_versions(api):
    tid = api.thread()["id"]
    a = api.send(tid, "[[fake reply='The quick brown fox.\nSecond line.']]").last.data["message"]
    b = api.post(f"/api/convo/messages/{a['id']}/edit", json={"content": "The quick red fox.\nSecond line."}).json()
    diff = api.get(f"/api/convo/messages/{a['id']}/diff", params={"against": b["id"]}).json()
    assert diff["from_id"] == a["id"] and diff["to_id"] == b["id"]
    assert {"op": "delete", "text": "brown"} in diff["changes"]
    assert {"op": "insert", "text": "red"} in diff["changes"]
    assert "-The quick brown fox." in diff["unified"] and "+The quick red fox." in diff["unified"]
    assert api.get(f"/api/convo/messages/{a['id']}/diff").status_code == 422
    assert api.get(f"/api/convo/messages/{a['id']}/diff", params={"against": 10**9}).status_code == 404


def test_branch_into_a_new_chat_copies_the_path(api):
    tid = api.thread(title="Origin", model="fake-mini")["id"]
    api.send(tid, "alpha")
    middle = api.send(tid, "beta").last.data["message"]
    api.send(tid, "gamma")
    response = api.post(f"/api/convo/messages/{middle['id']}/branch")
    assert response.status_code == 201
    branch = response.json()
    assert branch["id"] != tid and branch["title"] == "Origin (branch)" and branch["model"] == "fake-mini"
    assert contents(branch) == ["alpha", "You said: alpha", "beta", "You said: beta"]
    assert all(m["thread_id"] == branch["id"] for m in branch["messages"])
    follow_up = api.send(branch["id"], "delta")
    assert follow_up.last.event == "done"
    assert len(api.get(f"/api/threads/{tid}").json()["messages"]) == 6, "the original is untouched"


def test_delete_a_thread_with_branches(api):
    tid = api.thread()["id"]
    answer = api.send(tid, "one").last.data["message"]
    api.stream("POST", f"/api/convo/messages/{answer['id']}/regenerate", json={})
    api.stream("POST", f"/api/convo/messages/{answer['parent_id']}/edit", json={"content": "uno"})
    assert api.delete(f"/api/threads/{tid}").status_code == 204
    assert api.get(f"/api/convo/messages/{answer['id']}/versions").status_code == 404


def test_version_endpoints_are_owner_only_and_validate(server, api):
    tid = api.thread()["id"]
    stream = api.send(tid, "mine")
    answer = stream.last.data["message"]
    other = server.api()
    for method, path, body in [
        ("POST", f"/api/convo/messages/{answer['id']}/regenerate", {}),
        ("POST", f"/api/convo/messages/{answer['id']}/edit", {"content": "x"}),
        ("GET", f"/api/convo/messages/{answer['id']}/versions", None),
        ("GET", f"/api/convo/messages/{answer['id']}/diff?against={answer['id']}", None),
        ("POST", f"/api/convo/messages/{answer['id']}/branch", None),
    ]:
        assert other.request(method, path, json=body).status_code == 404, path
    mine = other.send(other.thread()["id"], "theirs").last.data["message"]
    cross = api.get(f"/api/convo/messages/{answer['id']}/diff", params={"against": mine["id"]})
    assert cross.status_code == 404, "cannot diff against another user's message"
    assert api.post(f"/api/convo/messages/{answer['id']}/edit", json={"content": ""}).status_code == 422
    assert api.post(f"/api/convo/messages/{answer['id']}/edit", json={"content": "  "}).status_code == 422
    assert api.post(f"/api/convo/messages/{answer['id']}/regenerate", json={"temperature": 5}).status_code == 422
    assert api.post(f"/api/convo/messages/{answer['id']}/regenerate", json={"model": "nope"}).status_code == 422
    slow = api.send(tid, SLOW, stop_after=2)
    busy = api.post(f"/api/convo/messages/{answer_id(slow)}/regenerate", json={})
    assert busy.status_code == 409
    api.post(f"/api/convo/messages/{answer_id(slow)}/cancel")


def test_health_stays_fast_while_the_longest_versions_are_compared(server, api):
    """Diffs run off the event loop and are bounded: two 200,000-character versions (the API's limit) of
    one repeated word once froze every request for tens of minutes."""
    tid = api.thread()["id"]
    answer = api.send(tid, "question").last.data["message"]
    rng = random.Random(3)
    pairs = [("a " * 100_000, "b " + "a " * 99_999),
             ("".join(rng.choice("xyzw \n") for _ in range(200_000)), "".join(rng.choice("xyzw \n") for _ in range(200_000)))]
    ids = []
    for old, new in pairs:
        for content in (old, new):
            edited = api.post(f"/api/convo/messages/{answer['id']}/edit", json={"content": content, "regenerate": False})
            assert edited.status_code == 201, edited.text
            ids.append(edited.json()["id"])
    timings = []

    def compare() -> None:
        for first, second in [(ids[0], ids[1]), (ids[2], ids[3])] * 2:
            started = time.perf_counter()
            response = api.get(f"/api/convo/messages/{first}/diff", params={"against": second}, timeout=60)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            changes = response.json()["changes"]
            assert "".join(c["text"] for c in changes if c["op"] != "insert") == pairs[ids.index(first) // 2][0]

    assert_responsive(server.url, compare)
    assert max(timings) < 5, timings  # in wall time on a shared machine; well under a second alone


@pytest.mark.scale_mode  # answers generated: also with Redis streams and a worker
def test_a_regenerate_or_an_edit_can_be_resumed_cancelled_and_cut_by_a_restart(own_server):
    from tests.api.test_stream import wait_for

    api = own_server.api()
    tid = api.thread()["id"]
    first = api.send(tid, "question [[fake reply='first answer']]")
    question = first.events[0].data["user_message"]

    # A regenerate, read partly, resumed after the last event seen, then another one cancelled.
    slow = "[[fake tokens=60 interval=0.05]]"
    edited = api.stream("POST", f"/api/convo/messages/{question['id']}/edit", json={"content": f"again {slow}"},
                        stop_after=4)
    rest = api.follow(answer_id(edited), after=4)
    assert edited.ids + rest.ids == list(range(1, rest.ids[-1] + 1)) and rest.last.event == "done"
    regenerated = api.stream("POST", f"/api/convo/messages/{answer_id(edited)}/regenerate", json={}, stop_after=3)
    api.post(f"/api/convo/messages/{answer_id(regenerated)}/cancel")
    ended = api.follow(answer_id(regenerated), after=3).last.data["message"]
    assert ended["status"] == "cancelled" and ended["version_count"] == 2

    # An edit cut by a restart ends `interrupted` with its text, and the versions stay navigable.
    cut = api.stream("POST", f"/api/convo/messages/{question['id']}/edit", json={"content": f"once more {slow}"},
                     stop_after=5)

    def newest() -> dict:
        return api.get(f"/api/convo/messages/{answer_id(cut)}/versions").json()["items"][-1]

    wait_for(lambda: newest()["content"].startswith(cut.text))  # a checkpoint holds what was seen
    own_server.restart(kill=True)
    message = wait_for(lambda: (m := newest())["status"] == "interrupted" and m)
    assert message["content"].startswith(cut.text)
    versions = api.get(f"/api/convo/messages/{question['id']}/versions").json()["items"]
    assert versions[0]["content"] == "question [[fake reply='first answer']]" and len(versions) == 3
