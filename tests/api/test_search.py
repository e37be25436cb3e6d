"""POST /api/convo/search on a real server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.test_files import attach
from tests.support import Api


def search(api: Api, q: str, **body: Any) -> dict[str, Any]:
    response = api.post("/api/convo/search", json={"q": q, **body})
    assert response.status_code == 200, response.text
    return response.json()


def say(api: Api, thread_id: int, content: str, reply: str | None = None) -> None:
    """A user message and its (finished) answer; the answer is `reply`, or the fake's echo."""
    directive = f" [[fake reply='{reply}']]" if reply is not None else ""
    stream = api.send(thread_id, content + directive)
    assert stream.last.event == "done", stream.events


def word() -> str:
    """A word no other test uses, so tests sharing a server cannot see each other's documents."""
    return "zq" + uuid.uuid4().hex[:8]


def test_messages_and_titles_are_found_with_escaped_highlights(api: Api) -> None:
    key = word()
    thread = api.thread(title=f"Trip to Lisbon {key}")
    say(api, thread["id"], f"Where is the best <b>pastel</b> & nata in Lisbon? {key}", reply="Try Belém.")
    items = search(api, key)["items"]
    kinds = sorted(i["kind"] for i in items)
    assert kinds == ["message", "thread"]
    title = next(i for i in items if i["kind"] == "thread")
    assert title["thread_id"] == thread["id"] and title["message_id"] is None
    assert title["snippet"] == f"Trip to Lisbon <mark>{key}</mark>"
    message = next(i for i in items if i["kind"] == "message")
    assert message["role"] == "user" and message["thread_title"] == f"Trip to Lisbon {key}"
    assert message["snippet"] == (
        f"Where is the best &lt;b&gt;pastel&lt;/b&gt; &amp; nata in Lisbon? <mark>{key}</mark> "
        "[[fake reply=&#x27;Try Belém.&#x27;]]"
    )
    # The assistant's finished answer is indexed too, accents and all.
    answer = search(api, "belem", thread_id=thread["id"], role="assistant")["items"]
    assert [i["snippet"] for i in answer] == ["Try <mark>Belém</mark>."]


def test_ranking_prefers_dense_short_matches_then_recent_ones(api: Api) -> None:
    key = word()
    thread = api.thread(title="ranking")
    filler = " ".join(["lorem ipsum dolor sit amet"] * 12)
    say(api, thread["id"], f"one passing mention of {key} in a long text: {filler}", reply="ok")
    say(api, thread["id"], f"{key} {key} {key} tuning guide", reply="ok")
    say(api, thread["id"], f"{key} notes", reply="ok")
    say(api, thread["id"], f"{key} notes", reply="ok")  # same text, written later
    items = search(api, key, role="user")["items"]
    assert len(items) == 4
    assert items[0]["snippet"].startswith(f"<mark>{key}</mark> <mark>{key}</mark>")
    assert items[-1]["snippet"].startswith("one passing mention")
    twins = items[1:3]
    assert twins[0]["snippet"] == twins[1]["snippet"]
    assert twins[0]["created_at"] > twins[1]["created_at"]  # the recency boost breaks the tie
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)


def test_words_are_anded_and_phrases_keep_their_order(api: Api) -> None:
    key = word()
    thread = api.thread()
    say(api, thread["id"], f"{key} red apple pie", reply="ok")
    say(api, thread["id"], f"{key} apple that is red", reply="ok")
    say(api, thread["id"], f"{key} green apple", reply="ok")
    assert len(search(api, f"{key} red apple", role="user")["items"]) == 2
    phrase = search(api, f'{key} "red apple"', role="user")["items"]
    assert [i["snippet"] for i in phrase] == [
        f"<mark>{key}</mark> <mark>red</mark> <mark>apple</mark> pie [[fake reply=&#x27;ok&#x27;]]"
    ]
    assert search(api, f'{key} "apple red"', role="user")["items"] == []


def test_prefixes_match_word_beginnings_only(api: Api) -> None:
    key = word()
    thread = api.thread()
    say(api, thread["id"], f"{key} the deployment failed", reply="ok")
    assert search(api, f"{key} deploy", role="user")["items"] == []
    items = search(api, f"{key} deploy*", role="user")["items"]
    assert [i["snippet"] for i in items] == [
        f"<mark>{key}</mark> the <mark>deployment</mark> failed [[fake reply=&#x27;ok&#x27;]]"
    ]
    assert search(api, f"{key} ploy*", role="user")["items"] == []
    assert len(search(api, f"{key[:5]}*", role="user", thread_id=thread["id"])["items"]) == 1


def test_filters_by_thread_role_and_dates(api: Api) -> None:
    key = word()
    first, second = api.thread(), api.thread()
    say(api, first["id"], f"{key} in the first thread")
    say(api, second["id"], f"{key} in the second thread")
    # A thread is titled after its first message, so titles match too.
    everything = search(api, key)["items"]
    assert sorted(i["kind"] for i in everything) == ["message"] * 4 + ["thread"] * 2
    assert {(i["thread_id"], i["role"]) for i in everything if i["kind"] == "message"} == {
        (first["id"], "user"),
        (first["id"], "assistant"),
        (second["id"], "user"),
        (second["id"], "assistant"),
    }
    assert {i["thread_id"] for i in search(api, key, thread_id=second["id"])["items"]} == {second["id"]}
    assert {i["role"] for i in search(api, key, role="assistant")["items"]} == {"assistant"}
    now = datetime.now(UTC)
    assert len(search(api, key, **{"from": (now - timedelta(hours=1)).isoformat()})["items"]) == 6
    assert search(api, key, **{"from": (now + timedelta(hours=1)).isoformat()})["items"] == []
    assert search(api, key, to=(now - timedelta(hours=1)).isoformat())["items"] == []
    bad = api.post(
        "/api/convo/search",
        json={"q": key, "from": now.isoformat(), "to": (now - timedelta(days=1)).isoformat()},
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_range"
    for body in (
        {"role": "robot"},
        {"limit": 0},
        {"limit": 1000},
        {"thread_id": "x"},
        {"from": "yesterday"},
        {"q": None},
        {"thread_id": 10**12},
        {"to": "0001-01-02T00:00:00Z"},
    ):
        response = api.post("/api/convo/search", json={"q": key, **body})
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
    # A time without an offset is UTC: mixed with one that has it, the range still compares (a 500 before).
    mixed = search(api, key, **{"from": (now - timedelta(hours=1)).replace(tzinfo=None).isoformat(),
                                "to": (now + timedelta(hours=1)).isoformat()})
    assert len(mixed["items"]) == 6
    forged = base64.urlsafe_b64encode(json.dumps([1e18, 1.0, 5]).encode()).decode().rstrip("=")
    absurd = api.post("/api/convo/search", json={"q": key, "cursor": forged})
    assert absurd.status_code == 422 and absurd.json()["error"]["code"] == "invalid_cursor"


def test_cursor_pages_through_every_hit_once(api: Api) -> None:
    key = word()
    thread = api.thread()
    for n in range(7):
        say(api, thread["id"], f"{key} number {n}", reply="ok")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = search(api, key, role="user", limit=3, **({"cursor": cursor} if cursor else {}))
        pages += 1
        seen += [i["snippet"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 7 and len(set(seen)) == 7
    forged = [
        b"not json",
        b"[1, 2]",
        b"[1e999, 1, 1]",
        b"[NaN, 1, 1]",
        b"[1, 1, 1e40]",
        b'["x", 1, 1]',
        b"[1, 1, -5]",
        b"{}",
    ]
    for cursor in ["not-a-cursor", "%%%", *(base64.urlsafe_b64encode(raw).decode() for raw in forged)]:
        bad = api.post("/api/convo/search", json={"q": key, "cursor": cursor})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_cursor", (cursor, bad.text)


HOSTILE = [
    "",
    " ",
    '"',
    '""',
    '"""',
    '" "',
    '"unterminated phrase',
    "*",
    "**",
    "***x",
    "a*b*",
    "-",
    "-x",
    "+x",
    "^x",
    "x:",
    ":x",
    "body:x",
    "tags:u1",
    "title:*",
    "(",
    ")",
    "((x)",
    "x)",
    "NEAR(a b)",
    "NEAR/3",
    "a AND",
    "OR",
    "NOT x",
    "a OR b",
    "a | b",
    "a & b",
    "!x",
    "a <-> b",
    "x:*",
    "'",
    "''",
    "it's",
    "\\",
    "\\\\x",
    "%",
    "_",
    "%_%",
    "x\x00y",
    "\x00",
    "\x01\x02",
    "{}",
    "[]",
    "$1",
    ":name",
    "?",
    ";",
    "'; DROP TABLE messages; --",
    '"a" "b" "',
    "😀",
    "🔥🔥 fire",
    "👩‍💻",
    "\u200b",
    "\ufeff",
    "a\u0301",
    "ｆｕｌｌｗｉｄｔｈ",
    "ǆ",
    "ß",
    "İstanbul",
    "x" * 10_000,
    "word " * 2000,
    '"' * 5000,
    "東" * 3000,
    "a*" * 3000,
    "(" * 4000,
    "\U0010ffff",
]


def test_hostile_input_never_fails(api: Api) -> None:
    key = word()
    thread = api.thread(title="hostile")
    say(
        api,
        thread["id"],
        f'{key} it\'s a "quoted" (paren) NEAR AND OR NOT x:y 100% _under_ 🔥 fire',
        reply="ok",
    )
    for q in HOSTILE:
        response = api.post("/api/convo/search", json={"q": q})
        assert response.status_code == 200, (q[:50], response.status_code, response.text[:300])
        assert isinstance(response.json()["items"], list)
    # Operators are words: each of these finds the message by its literal text.
    for q in ("it's", '"quoted"', "(paren)", "NEAR AND OR NOT", "x:y", "100%", "_under_", "fire*"):
        items = search(api, f"{key} {q}", role="user")["items"]
        assert len(items) == 1, q
    # A lone surrogate is valid JSON but no text: refused clearly, never a server error.
    raw = api.post(
        "/api/convo/search", content=b'{"q": "\\ud800 fire"}', headers={"Content-Type": "application/json"}
    )
    assert raw.status_code == 422 and raw.json()["error"]["code"] == "invalid_request", raw.text
    too_long = api.post("/api/convo/search", json={"q": "x" * 10_001})
    assert too_long.status_code == 422


def test_chinese_japanese_and_korean_are_found(api: Api) -> None:
    key = word()
    thread = api.thread(title=f"旅行 {key}")
    say(api, thread["id"], f"{key} 東京都庁の展望台に行きました", reply="素晴らしいですね")
    say(api, thread["id"], f"{key} 我喜欢吃北京烤鸭", reply="好")
    say(api, thread["id"], f"{key} 서울에서 비빔밥을 먹었어요", reply="좋아요")
    expected = {
        "東京": f"<mark>{key}</mark> <mark>東京</mark>都庁の展望台に行きました",
        "展望台": f"<mark>{key}</mark> 東京都庁の<mark>展望台</mark>に行きました",
        "都庁の展": f"<mark>{key}</mark> 東京<mark>都庁の展</mark>望台に行きました",
        "北京烤鸭": f"<mark>{key}</mark> 我喜欢吃<mark>北京烤鸭</mark>",
        "烤鸭": f"<mark>{key}</mark> 我喜欢吃北京<mark>烤鸭</mark>",
        "서울": f"<mark>{key}</mark> <mark>서울</mark>에서 비빔밥을 먹었어요",
        "비빔밥": f"<mark>{key}</mark> 서울에서 <mark>비빔밥</mark>을 먹었어요",
    }
    for q, snippet in expected.items():
        items = search(api, f"{key} {q}", role="user")["items"]
        assert len(items) == 1 and items[0]["snippet"].startswith(snippet + " [[fake"), (q, items)
    # A single character matches wherever it stands, even last in its run.
    assert len(search(api, f"{key} 鸭", role="user")["items"]) == 1
    assert len(search(api, f"{key} 요", role="user")["items"]) == 1
    assert [i["kind"] for i in search(api, "旅行")["items"] if i["thread_id"] == thread["id"]] == ["thread"]
    assert search(api, f"{key} 大阪", role="user")["items"] == []
    assert search(api, f"{key} 台東", role="user")["items"] == []  # both characters occur, not in this order


def test_accents_fold_both_ways(api: Api) -> None:
    key = word()
    thread = api.thread()
    say(api, thread["id"], f"{key} Crème brûlée at the CAFÉ near Zürich", reply="ok")
    say(api, thread["id"], f"{key} my resume is ready", reply="ok")
    for q in ("creme brulee", "CRÈME", "café", "cafe", "zurich", "ZÜRICH", "brû*"):
        items = search(api, f"{key} {q}", role="user")["items"]
        assert len(items) == 1 and "Crème" in items[0]["snippet"], q
    marked = search(api, f"{key} cafe", role="user")["items"][0]["snippet"]
    assert "<mark>CAFÉ</mark>" in marked
    assert len(search(api, f"{key} résumé", role="user")["items"]) == 1


def test_results_are_strictly_the_callers_own(server: Any, api: Api) -> None:
    key = word()
    thread = api.thread(title=f"secret {key}")
    say(api, thread["id"], f"{key} my private plans")
    other = server.api()
    try:
        assert search(other, key)["items"] == []
        assert search(other, f"{key[:4]}*")["items"] == []
        response = other.post("/api/convo/search", json={"q": key, "thread_id": thread["id"]})
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        missing = other.post("/api/convo/search", json={"q": key, "thread_id": 2**31 - 1})
        assert missing.status_code == 404 and missing.json() == response.json()
        own = other.thread(title=f"mine {key}")
        assert [i["thread_id"] for i in search(other, key)["items"]] == [own["id"]]
    finally:
        other.close()
    assert len(search(api, key)["items"]) == 3
    assert (
        api.post("/api/convo/search", json={"q": key}, headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )


def test_answers_are_indexed_when_finished_and_edits_and_deletes_follow(api: Api) -> None:
    key = word()
    thread = api.thread(title=f"draft {key}")
    stream = api.send(thread["id"], f"{key} count please [[fake tokens=12 interval=0.15]]", stop_after=3)
    message_id = stream.of("start")[0].data["assistant_message"]["id"]
    assert search(api, f"{key} count")["items"]  # the user message is there at once
    # The answer streams: its first word, already written, is not searchable yet.
    assert search(api, "w0", thread_id=thread["id"])["items"] == []
    assert api.follow(message_id).last.event == "done"
    found = search(api, "w3", thread_id=thread["id"])["items"]
    assert [(i["message_id"], i["role"]) for i in found] == [(message_id, "assistant")]

    assert api.patch(f"/api/threads/{thread['id']}", json={"title": f"final {key}"}).status_code == 200
    titles = [i["snippet"] for i in search(api, key)["items"] if i["kind"] == "thread"]
    assert titles == [f"final <mark>{key}</mark>"]
    assert search(api, f"draft {key}")["items"] == []
    assert all(i["thread_title"] == f"final {key}" for i in search(api, key)["items"])

    assert api.delete(f"/api/threads/{thread['id']}").status_code == 204
    assert search(api, key)["items"] == []


def test_file_text_is_found_once_per_file_by_its_words_and_its_name(server: Any, api: Api) -> None:
    key, name_key = word(), word()
    thread = api.thread(title="reading list")
    other_thread = api.thread(title="elsewhere")
    # Long enough for several chunks, the key in each: the file still shows once, at its best chunk.
    paragraphs = [f"Section {n}. The {key} keeper trims the wick and logs the beam. " + "Fog rolls in. " * 40
                  for n in range(8)]
    attachment = attach(api, thread["id"], f"log-{name_key}.md", "\n\n".join(paragraphs).encode())
    assert attachment["chunk_count"] > 1

    items = search(api, key)["items"]
    assert len(items) == 1
    hit = items[0]
    assert hit["kind"] == "attachment" and hit["attachment_id"] == attachment["id"]
    assert hit["filename"] == f"log-{name_key}.md" and hit["message_id"] is None and hit["role"] is None
    assert hit["thread_id"] == thread["id"] and hit["thread_title"] == "reading list"
    assert f"<mark>{key}</mark> keeper" in hit["snippet"]
    for name in (name_key, f"log-{name_key}.md", f"log {name_key[:5]}*"):
        assert [i["attachment_id"] for i in search(api, name)["items"]] == [attachment["id"]], name
    assert [i["kind"] for i in search(api, f'"{key} keeper"')["items"]] == ["attachment"]

    # Filters: files have no role; the thread filter keeps them to their chat.
    assert search(api, key, role="user")["items"] == []
    assert search(api, key, thread_id=other_thread["id"])["items"] == []
    assert len(search(api, key, thread_id=thread["id"])["items"]) == 1
    other = server.api()
    try:
        assert search(other, key)["items"] == [] and search(other, name_key)["items"] == []
    finally:
        other.close()

    assert api.delete(f"/api/attachments/{attachment['id']}").status_code == 204
    assert search(api, key)["items"] == [] and search(api, name_key)["items"] == []


def test_scores_depend_only_on_the_callers_own_documents(server: Any) -> None:
    """Security review M1: a document's scores for two of its words, candidate / nonce, was the ratio
    of their IDFs (recency cancels), so with shared statistics it told how many of other users'
    messages, titles or file chunks hold the candidate."""
    nonce, candidate = word(), word()
    prober, other = server.api(), server.api()
    try:
        thread = prober.thread(title="probe")
        say(prober, thread["id"], f"{nonce} {candidate}", reply="ok")
        attach(prober, thread["id"], "probe.txt", f"{nonce} {candidate}".encode())

        def ratios() -> dict[str, float]:
            found = {q: {i["kind"]: i["score"] for i in search(prober, q)["items"]} for q in (candidate, nonce)}
            assert set(found[candidate]) == set(found[nonce]) == {"message", "attachment"}
            return {kind: found[candidate][kind] / found[nonce][kind] for kind in found[candidate]}

        before = ratios()
        for n in range(4):
            own = other.thread(title=f"{candidate} {n}")
            say(other, own["id"], f"{candidate} again, {n}", reply=f"{candidate} indeed")
            attach(other, own["id"], f"notes{n}.txt", f"{candidate} in a file, {n}".encode())
        assert len(search(other, candidate)["items"]) == 16
        # Scores are rounded to six places; a shared document frequency moved the ratio by tens of percent.
        assert ratios() == pytest.approx(before, rel=1e-4)
    finally:
        prober.close()
        other.close()
