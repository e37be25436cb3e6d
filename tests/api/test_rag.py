"""POST /api/rag/search and grounded answers, on a real server with SQLite and PostgreSQL (and on a
PostgreSQL without pgvector)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.api.test_files import attach, upload, wait_ready
from tests.api.test_stream import answer_id
from tests.conftest import Server
from tests.fakes.upstream import FakeUpstream
from tests.support import Api

# A small labelled corpus: each file is about one thing, each query has one right file.
CORPUS = {
    "bees.md": "# Beekeeping\n\nHoney bees live in colonies ruled by a queen. Workers forage for nectar and pollen "
               "and store honey in wax combs. Swarming happens in spring when a hive grows crowded.",
    "cars.txt": "Maintaining an automobile: change the engine oil every ten thousand kilometres, check tyre "
                "pressure monthly, and replace brake pads when they squeal.",
    "bread.md": "# Sourdough\n\nA starter of flour and water ferments for days. Knead the dough, let it rise "
                "overnight, and bake it in a hot oven until the crust is dark.",
    "errors.txt": "Troubleshooting: error code ZX-4471 means the flux capacitor lost calibration. Power-cycle "
                  "the unit and rerun the calibration wizard.",
    "stars.txt": "Stars form inside collapsing clouds of gas and dust. Our sun is a middle-aged yellow dwarf that "
                 "fuses hydrogen into helium in its core.",
}
QUERIES = [
    ("how do I look after my car", "cars.txt"),          # words differ ("automobile"): vectors carry it
    ("ZX-4471", "errors.txt"),                           # a code: keywords carry it
    ("insects that make honey", "bees.md"),
    ("baking a loaf with a starter", "bread.md"),
    ("what is the sun made of", "stars.txt"),
]


@pytest.fixture(scope="module")
def corpus(server: Server) -> tuple[Api, dict[str, Any], dict[str, int]]:
    api = server.api()
    thread = api.thread(title="library")
    ids = {name: attach(api, thread["id"], name, body.encode())["id"] for name, body in CORPUS.items()}
    return api, thread, ids


def rag(api: Api, q: str, **body: Any) -> list[dict[str, Any]]:
    response = api.post("/api/rag/search", json={"q": q, **body})
    assert response.status_code == 200, response.text
    return response.json()["items"]


@pytest.mark.parametrize("mode", ["hybrid", "rrf", "vector"])
def test_every_labelled_query_finds_its_file_first(corpus: tuple, mode: str) -> None:
    api, thread, ids = corpus
    for q, expected in QUERIES:
        items = rag(api, q, thread_id=thread["id"], mode=mode, k=3)
        assert items and items[0]["attachment_id"] == ids[expected], (mode, q, [i["filename"] for i in items])


def test_keywords_alone_miss_a_paraphrase_that_hybrid_finds(corpus: tuple) -> None:
    api, thread, ids = corpus
    bm25 = rag(api, "how do I look after my car", thread_id=thread["id"], mode="bm25")
    assert all(i["attachment_id"] != ids["cars.txt"] for i in bm25)
    code = rag(api, "ZX-4471", thread_id=thread["id"], mode="bm25")
    assert code[0]["attachment_id"] == ids["errors.txt"]


def test_scores_are_exposed_and_ordered(corpus: tuple) -> None:
    api, thread, _ids = corpus
    items = rag(api, "honey bees in the hive", thread_id=thread["id"], k=5)
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    top = items[0]
    assert top["filename"] == "bees.md" and "queen" in top["text"]
    assert top["bm25_score"] > 0 and 0 < top["vector_score"] <= 1
    assert 0 < top["score"] <= 1  # weighted fusion of min-max normalised scores
    only_vector = rag(api, "honey bees in the hive", thread_id=thread["id"], mode="vector", k=2)
    assert only_vector[0]["bm25_score"] is None and only_vector[0]["score"] == only_vector[0]["vector_score"]


def test_search_can_name_attachments(corpus: tuple) -> None:
    api, _thread, ids = corpus
    items = rag(api, "honey", attachment_ids=[ids["bread.md"], ids["stars.txt"]], mode="hybrid")
    assert {i["attachment_id"] for i in items} <= {ids["bread.md"], ids["stars.txt"]}


def test_hybrid_retrieval_works_on_a_postgresql_without_pgvector(plain_pg_server: Server) -> None:
    api = plain_pg_server.api()
    thread = api.thread(title="library")
    ids = {name: attach(api, thread["id"], name, body.encode())["id"] for name, body in CORPUS.items()}
    for q, expected in QUERIES:
        items = rag(api, q, thread_id=thread["id"], k=3)
        assert items[0]["attachment_id"] == ids[expected], (q, [i["filename"] for i in items])
        assert items[0]["vector_score"] > 0
    log = plain_pg_server.log_path.read_text()
    assert log.count("retrieval: exact vectors in Python, no pgvector") == 1, log[-3000:]
    # Exact search sees a deletion at once: the cached matrix is reloaded.
    assert api.delete(f"/api/attachments/{ids['cars.txt']}").status_code == 204
    items = rag(api, "how do I look after my car", thread_id=thread["id"], mode="vector")
    assert items and ids["cars.txt"] not in {i["attachment_id"] for i in items}


@pytest.mark.parametrize("body", [
    {"q": ""}, {"q": "x", "mode": "telepathy"}, {"q": "x", "k": 0}, {"q": "x", "k": 1000},
    {"q": "x", "thread_id": 0}, {"q": "x", "attachment_ids": ["a"]}, {"nothing": 1},
])
def test_bad_search_input_is_422(api: Api, body: dict[str, Any]) -> None:
    response = api.post("/api/rag/search", json=body)
    assert response.status_code == 422, response.text
    assert "error" in response.json()


def test_unknown_thread_is_404(api: Api) -> None:
    response = api.post("/api/rag/search", json={"q": "bees", "thread_id": 987654321})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_an_answer_is_grounded_on_the_threads_files_and_cites_them(
    api: Api, fake_upstream: FakeUpstream
) -> None:
    thread = api.thread()
    doc = attach(api, thread["id"], "manual.txt",
                 b"Pump model QX-77 needs its impeller replaced every 3,000 hours of running.\n\n"
                 b"The warranty covers the housing for five years.")
    stream = api.send(thread["id"], "How often does the QX-77 impeller need replacing? "
                                    "[[fake reply='Every 3,000 hours [1].']]")
    kinds = [e.event for e in stream.events]
    assert kinds[:2] == ["start", "citations"] and kinds[-1] == "done", kinds
    assert stream.ids == list(range(1, len(stream.events) + 1))
    items = stream.of("citations")[0].data["items"]
    assert items[0]["n"] == 1 and items[0]["attachment_id"] == doc["id"] and items[0]["filename"] == "manual.txt"
    assert "3,000 hours" in items[0]["snippet"]

    sent = fake_upstream.requests[-1]["messages"]
    sources = [m["content"] for m in sent if m["role"] == "system"]
    assert sources and "[1] manual.txt" in sources[-1] and "impeller replaced every 3,000 hours" in sources[-1]
    assert "square brackets" in sources[-1]
    assert sent[-1]["role"] == "user" and "QX-77" in sent[-1]["content"]

    answer = stream.last.data["message"]
    assert answer["content"] == "Every 3,000 hours [1]."
    assert [c["chunk_id"] for c in answer["meta"]["citations"]] == [i["chunk_id"] for i in items]
    stored = api.get(f"/api/threads/{thread['id']}").json()["messages"][-1]
    assert stored["meta"]["citations"] == answer["meta"]["citations"]
    # A late reader replays the same events from the database.
    replay = api.follow(answer["id"], after=0)
    assert [e.event for e in replay.events][:2] == ["start", "citations"]


def test_a_thread_without_files_gets_no_citations(api: Api, fake_upstream: FakeUpstream) -> None:
    thread = api.thread()
    stream = api.send(thread["id"], "hello there")
    assert not stream.of("citations")
    assert "citations" not in stream.last.data["message"]["meta"]
    assert all(m["role"] != "system" for m in fake_upstream.requests[-1]["messages"])


def test_named_attachments_ground_an_answer_in_another_thread(api: Api, fake_upstream: FakeUpstream) -> None:
    source = api.thread()
    doc = attach(api, source["id"], "recipes.md", b"# Pesto\n\nBasil, pine nuts, garlic, parmesan and olive oil.")
    other = api.thread()
    stream = api.send(other["id"], "What goes into pesto?", attachment_ids=[doc["id"]])
    assert stream.of("citations")[0].data["items"][0]["attachment_id"] == doc["id"]
    assert "pine nuts" in fake_upstream.requests[-1]["messages"][0]["content"]
    foreign = api.post(f"/api/threads/{other['id']}/messages", json={"content": "x", "attachment_ids": [999999999]})
    assert foreign.status_code == 404


def test_sources_stay_within_a_small_context_window(api: Api, fake_upstream: FakeUpstream) -> None:
    thread = api.thread(model="fake-mini")  # a 256-token window
    long_text = "\n\n".join(f"Paragraph {i} about lighthouse maintenance and lamp rotation schedules."
                            for i in range(60))
    attach(api, thread["id"], "long.txt", long_text.encode())
    stream = api.send(thread["id"], "lighthouse lamp rotation", max_tokens=64)
    assert stream.last.event == "done", stream.events
    citations = stream.of("citations")
    sent = fake_upstream.requests[-1]["messages"]
    words = sum(len(m["content"].split()) for m in sent)
    assert words < 256 - 64  # fewer words than tokens, so the prompt fits beside the answer
    assert not citations or len(citations[0].data["items"]) < 8


def test_a_deleted_attachment_no_longer_grounds_answers(api: Api, fake_upstream: FakeUpstream) -> None:
    thread = api.thread()
    response = upload(api, thread["id"], "later.txt", b"The vault code is 7431.")
    body = wait_ready(api, response.json()["id"])
    assert body["status"] == "ready"
    api.delete(f"/api/attachments/{body['id']}")
    stream = api.send(thread["id"], "What is the vault code?")
    assert not stream.of("citations")


def test_answering_again_keeps_to_the_files_the_question_named(api: Api) -> None:
    thread = api.thread()
    named = attach(api, thread["id"], "old-manual.txt", b"The QX-77 pump impeller is replaced every 3,000 hours.")
    attach(api, thread["id"], "new-manual.txt", b"The QX-77 pump impeller is replaced every 5,000 hours. QX-77 QX-77.")
    first = api.send(thread["id"], "When is the QX-77 impeller replaced? [[fake reply='ok']]",
                     attachment_ids=[named["id"]])
    cited = {c["attachment_id"] for c in first.of("citations")[0].data["items"]}
    assert cited == {named["id"]}
    again = api.stream("POST", f"/api/convo/messages/{answer_id(first)}/regenerate", json={})
    assert {c["attachment_id"] for c in again.of("citations")[0].data["items"]} == {named["id"]}
    question = first.events[0].data["user_message"]["id"]
    edited = api.stream("POST", f"/api/convo/messages/{question}/edit",
                        json={"content": "And the QX-77 impeller interval? [[fake reply='ok']]"})
    assert {c["attachment_id"] for c in edited.of("citations")[0].data["items"]} == {named["id"]}


@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
def test_keyword_scores_depend_only_on_the_callers_own_files(server: Server, mode: str) -> None:
    """Security review M1: the ratio of a chunk's scores for two of its words was IDF(candidate) /
    IDF(nonce), so with shared statistics it told how many of other users' chunks hold the candidate."""
    nonce, candidate = f"nq{uuid.uuid4().hex[:8]}", f"cq{uuid.uuid4().hex[:8]}"
    prober, other = server.api(), server.api()
    try:
        thread = prober.thread()
        attach(prober, thread["id"], "probe.txt", f"{nonce} {candidate}".encode())
        attach(prober, thread["id"], "filler.txt", b"Unrelated words about gardening and tomatoes.")

        def scores() -> tuple[float, float]:
            found = [rag(prober, q, thread_id=thread["id"], mode=mode, k=1)[0]["bm25_score"] for q in (candidate, nonce)]
            return found[0], found[1]

        before = scores()
        assert before[0] == pytest.approx(before[1])  # one chunk in two holds each word
        other_thread = other.thread()
        for n in range(6):
            attach(other, other_thread["id"], f"notes{n}.txt", f"{candidate} appears in note {n}".encode())
        assert len(rag(other, candidate, mode="bm25", k=10)) == 6
        after = scores()
        assert after == pytest.approx(before, rel=1e-9)
    finally:
        prober.close()
        other.close()
