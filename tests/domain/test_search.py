"""The query language, the indexed text and the snippets, as contracts other modules rely on."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from convo.db.models import User
from convo.db.search_text import K1, B, bm25, idf, index_text
from convo.db.session import Database
from convo.domain import search as search_module
from convo.domain.search import Term, fts5_match, highlight, parse_query
from tests.support import run_async


def test_parse_words_phrases_and_prefixes() -> None:
    assert parse_query('deploy* "red apple" plain') == [
        Term("deploy", prefix=True),
        Term("red apple", phrase=True),
        Term("plain"),
    ]
    # Operators are words; what has no letter or digit is dropped rather than searched.
    assert [t.text for t in parse_query("a AND b OR NOT c NEAR(d)")] == [
        "a",
        "AND",
        "b",
        "OR",
        "NOT",
        "c",
        "NEAR(d)",
    ]
    assert parse_query('"" * - () ^ \x00 "') == []
    assert parse_query('"unterminated phrase') == [Term("unterminated phrase", phrase=True)]
    assert len(parse_query("w " * 5000)) == 32


def test_every_term_reaches_fts5_as_quoted_text() -> None:
    match = fts5_match(parse_query('say "he said ""hi""" x* NEAR(a'))
    assert match == 'body : ("say" AND "he said" AND "hi" AND "x" * AND "near(a")'


def test_indexed_text_is_folded_and_cjk_runs_become_bigrams() -> None:
    assert index_text("Crème Brûlée, STRASSE Straße Œuvre") == "creme brulee, strasse strasse oeuvre"
    assert index_text("東京都に行く").split() == ["東京", "京都", "都に", "に行", "行く", "く"]
    assert index_text("iPhone用ケース").split() == ["iphone", "用ケ", "ケー", "ース", "ス"]
    assert index_text("서울 a").split() == ["서울", "울", "a"]
    assert index_text(None) == "" and index_text("x\x00y") == "x y"


def test_cjk_queries_are_bigram_phrases_without_the_trailing_character() -> None:
    assert Term("東京都").query_text() == (" 東京 京都", False)
    assert Term("京").query_text() == (" 京", True)
    assert Term("Tokyo東京").query_text() == ("tokyo 東京", False)


def test_highlight_escapes_and_marks_folded_matches() -> None:
    terms = parse_query("cafe <b>")
    assert (
        highlight("<b>Café</b> & tea", terms)
        == "&lt;<mark>b</mark>&gt;<mark>Café</mark>&lt;/<mark>b</mark>&gt; &amp; tea"
    )
    assert (
        highlight("deployment deploy", parse_query("deploy*"))
        == "<mark>deployment</mark> <mark>deploy</mark>"
    )
    assert highlight("deployment deploy", parse_query("deploy")) == "deployment <mark>deploy</mark>"
    assert highlight("展望台に", parse_query("展望台")) == "<mark>展望台</mark>に"


def test_long_text_is_cut_around_the_first_match() -> None:
    text = " ".join(f"w{i}" for i in range(300)) + " needle " + " ".join(f"v{i}" for i in range(300))
    snippet = highlight(text, parse_query("needle"))
    assert snippet.startswith("…") and snippet.endswith("…")
    assert "<mark>needle</mark>" in snippet and len(snippet) < 260
    assert highlight("a\n\n  b   needle", parse_query("needle")) == "a b <mark>needle</mark>"


SAMPLES = [
    "Plain ASCII, with punctuation: foo-bar v1.2.3 it's x_y",
    "Crème brûlée, ÉCOLE, Zürich, Ångström, façade, São Paulo, Dvořák, Łódź, Øre, Straße, Æsir, œuvre",
    "Ελληνικά: άλφα, έψιλον, ΐ",
    "東京都庁の展望台に行きました。我喜欢吃北京烤鸭！서울에서 비빔밥을 먹었어요",
    "mixed iPhone用ケース and ｶﾀｶﾅ half-width, 한 글자 a 字 b",
    "Ǆemal ǅ ǆ ĳ ﬁ 😀 👩‍💻",
]


def test_postgresql_folds_exactly_as_python(pg_url: str) -> None:
    """The trigger function is PL/pgSQL; queries are folded in Python. They must agree to the letter."""
    import psycopg

    from convo.db import migrate
    from tests.conftest import _fresh_pg_database

    url = _fresh_pg_database(pg_url, f"convo_fold_{os.getpid()}")
    migrate.upgrade(url.replace("postgresql://", "postgresql+asyncpg://"))
    with psycopg.connect(url) as conn:
        for sample in SAMPLES:
            (pg,) = conn.execute("SELECT convo_search_text(%s)", (sample,)).fetchone()
            assert pg.split() == index_text(sample).split(), sample
            (tokens,) = conn.execute(
                "SELECT array_agg(lexeme ORDER BY lexeme) FROM unnest(to_tsvector('simple', %s))", (pg,)
            ).fetchone()
            assert tokens, sample


@pytest.mark.parametrize("q", ["東京", "京", "Crème", "cafe*", '"a b"'])
def test_query_terms_are_never_empty_strings(q: str) -> None:
    for term in parse_query(q):
        assert term.query_text()[0].strip()


@pytest.fixture(params=["sqlite", "postgresql"])
def search_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database with one user (id 1) and one thread (id 1), on each engine."""
    from convo.db import migrate
    from tests.conftest import _fresh_pg_database

    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'search.db'}"
    else:
        pg = request.getfixturevalue("pg_url")
        url = _fresh_pg_database(pg, f"convo_search_{os.getpid()}").replace("postgresql://", "postgresql+asyncpg://")
    migrate.upgrade(url)
    run_async(
        _write(
            url,
            "INSERT INTO users (id, email, name, password_hash, role, disabled, created_at) "
            "VALUES (1, 'a@x', '', 'x', 'user', false, '2020-01-01 00:00:00')",
            "INSERT INTO threads (id, user_id, title, created_at, updated_at) "
            "VALUES (1, 1, 'common ground', '2020-01-01 00:00:00', '2020-01-01 00:00:00')",
        )
    )
    return url


async def _write(url: str, *statements: str, rows: list[dict[str, Any]] | None = None) -> None:
    if rows and url.startswith("sqlite"):  # SQLite keeps UTC times as text, as the app's column type does
        rows = [{k: v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for k, v in row.items()}
                for row in rows]
    db = Database(url)
    try:
        async with db.write() as session:
            for statement in statements:
                await session.execute(text(statement), rows) if rows else await session.execute(text(statement))
    finally:
        await db.close()


MESSAGE_SQL = (
    "INSERT INTO messages (id, thread_id, user_id, role, content, status, meta, event_seq, created_at, "
    "updated_at) VALUES (:id, 1, 1, :role, :content, 'complete', '{}', 0, :at, :at)"
)


def everything(url: str, q: str, **filters: Any) -> list[search_module.Hit]:
    """Every hit of user 1 for `q`, page by page through the cursor."""

    async def pages() -> list[search_module.Hit]:
        db = Database(url)
        try:
            search, seen, cursor = search_module.Search(db), [], None
            while True:
                hits, cursor = await search.search(User(id=1), q, limit=4, cursor=cursor,
                                                   filters=search_module.Filters(**filters))
                seen += hits
                if cursor is None:
                    return seen
        finally:
            await db.close()

    return run_async(pages())


def test_a_very_common_query_ranks_its_newest_matches(search_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With more matches than CANDIDATES, titles and then the newest are ranked, and the cursor ends there."""
    monkeypatch.setattr(search_module, "CANDIDATES", 5)
    rows = [
        {"id": i, "role": "user" if i % 2 else "assistant", "content": f"common word number {i}",
         "at": datetime(2026, 1, i, tzinfo=UTC)}
        for i in range(1, 21)
    ]
    run_async(_write(search_db, MESSAGE_SQL, rows=rows))

    seen = everything(search_db, "common")
    assert [h.kind for h in seen].count("thread") == 1
    assert sorted(h.message_id for h in seen if h.kind == "message") == [17, 18, 19, 20]
    users_only = everything(search_db, "common", role="user")
    assert sorted(h.message_id for h in users_only) == [11, 13, 15, 17, 19]


def test_matches_of_every_age_are_found_and_dates_filter_them(search_db: str) -> None:
    """PostgreSQL reads month windows newest first and then everything older; nothing may fall between
    them, whatever the dates asked for."""
    now = datetime.now(UTC)
    ages = {1: 0, 2: 20, 3: 45, 4: 100, 5: 200, 6: 400, 7: 700, 8: 1500}  # days old
    rows = [
        {"id": i, "role": "user", "content": f"vintage note {i}",
         "at": now - timedelta(days=days)}
        for i, days in ages.items()
    ]
    run_async(_write(search_db, MESSAGE_SQL, rows=rows))

    found = everything(search_db, "vintage")
    assert sorted(h.message_id for h in found) == list(ages)
    # Same relevance: the recency boost orders them newest first.
    assert [h.message_id for h in found] == sorted(ages, key=ages.__getitem__)
    window = everything(search_db, "vintage", since=now - timedelta(days=150), until=now - timedelta(days=10))
    assert sorted(h.message_id for h in window) == [2, 3, 4]
    old = everything(search_db, "vint*", until=now - timedelta(days=365))
    assert sorted(h.message_id for h in old) == [6, 7, 8]
    assert everything(search_db, "vintage", since=now + timedelta(days=1)) == []


def test_bm25_counts_whole_tokens_and_consecutive_ones() -> None:
    """`convo_bm25()` finds terms in indexed text without tokenizing it; it must count what FTS5 matches."""
    weight = idf(10, 2)  # in 2 of the user's 10 documents, which hold 100 tokens: avgdl 10

    def expected(tf: int, length: int) -> float:
        return weight * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / 10))

    body = "cache caches xcache my_cache cache. e mail e-mail e  x mail"
    tokens = len(re.findall(r"[^\W_]+", body))
    # "cache" alone, and after "_" (FTS5 splits there); not inside "caches" or "xcache".
    assert bm25(body, None, json.dumps([["cache"]]), 10, 100, 2) == pytest.approx(expected(3, tokens))
    assert bm25(body, None, json.dumps([["e", "mail"]]), 10, 100, 2) == pytest.approx(expected(2, tokens))
    # The length comes from FTS5's docsize row when there is one: its first varint (300 = 0x82 0x2c).
    assert bm25(body, bytes([0x82, 0x2C, 0x01]), json.dumps([["cache"]]), 10, 100, 2) == pytest.approx(
        expected(3, 300))
    assert bm25("", None, json.dumps([["cache"]]), 10, 100, 2) == 0.0
