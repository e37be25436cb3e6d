"""The keyword side: a persistent BM25 index, kept current as chunks are written, never rebuilt.

Both backends store term statistics (a row per chunk and term with its frequency, beside each chunk's
length) and compute Okapi BM25 over the user's own chunks only: document count, average length and
document frequencies never include another user's chunks, so a score says nothing about anyone else's
files (FTS5's `bm25()` counted over every user's chunks; security review M1). k1 = 1.2 and b = 0.75,
FTS5's fixed values, on the words made by `terms()` below.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from convo.db.search_text import K1, B, idf

MAX_QUERY_TERMS = 64

_WORD = re.compile(r"[^\W_]+")
# Words too common to tell documents apart; dropping them keeps postings short and queries fast.
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have he her his i if in into is it its of on or our she "
    "so than that the their them then there these they this to was we were what when which who will "
    "with you your not no do does did been being can could would should may might also".split()
)


def terms(content: str) -> list[str]:
    """Lower-cased, accent-folded word tokens without stopwords."""
    folded = unicodedata.normalize("NFKD", content.lower())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return [w for w in _WORD.findall(folded) if w not in STOPWORDS and len(w) < 64]


def query_terms(q: str) -> list[str]:
    return list(dict.fromkeys(terms(q)))[:MAX_QUERY_TERMS]


_DF = text(
    "SELECT term, count(*) FROM chunk_terms WHERE user_id = :u AND term IN :terms GROUP BY term"
).bindparams(bindparam("terms", expanding=True))
_STATS = text("SELECT count(*), avg(length) FROM chunks WHERE user_id = :u")


class TermKeywords:
    """BM25 from `chunk_terms`. The user's statistics are read first (index-only counts) and turned
    into IDF weights here: SQLite may be built without `ln()`."""

    def __init__(self, is_sqlite: bool) -> None:
        # SQLite's table also holds each chunk's length (migration 0010), so a query reads only its index:
        # joining the wide `chunks` rows for every posting made SciFact queries 50% slower there.
        self.lengths_in_terms = is_sqlite

    async def add(self, session: AsyncSession, user_id: int, docs: list[tuple[int, list[str]]]) -> None:
        rows = [{"c": chunk_id, "u": user_id, "t": term, "tf": tf, "l": len(words)}
                for chunk_id, words in docs for term, tf in Counter(words).items()]
        if not rows:
            return
        if self.lengths_in_terms:
            sql = "INSERT INTO chunk_terms (chunk_id, user_id, term, tf, length) VALUES (:c, :u, :t, :tf, :l)"
        else:
            sql = "INSERT INTO chunk_terms (chunk_id, user_id, term, tf) VALUES (:c, :u, :t, :tf)"
        await session.execute(text(sql), rows)

    async def search(
        self, session: AsyncSession, user_id: int, q_terms: list[str], k: int, attachment_ids: list[int] | None
    ) -> list[tuple[int, float]]:
        if attachment_ids is None:
            return await self._bm25(session, user_id, q_terms, k, "", {})
        return await self._bm25(session, user_id, q_terms, k,
                                "AND t.chunk_id IN (SELECT id FROM chunks WHERE attachment_id IN :a)",
                                {"a": attachment_ids})

    async def scores(
        self, session: AsyncSession, user_id: int, q_terms: list[str], chunk_ids: list[int]
    ) -> dict[int, float]:
        if not chunk_ids:
            return {}
        return dict(await self._bm25(session, user_id, q_terms, len(chunk_ids), "AND t.chunk_id IN :a",
                                     {"a": chunk_ids}))

    async def _bm25(
        self, session: AsyncSession, user_id: int, q_terms: list[str], k: int, extra: str, params: dict[str, object]
    ) -> list[tuple[int, float]]:
        if not q_terms:
            return []
        n, avgdl = (await session.execute(_STATS, {"u": user_id})).one()
        df = dict((await session.execute(_DF, {"u": user_id, "terms": q_terms})).all())
        if not n or not df:
            return []
        # Each term's weight as a bound value, so the statement needs no logarithm.
        found = list(df)
        weights = " ".join(f"WHEN :t{i} THEN CAST(:w{i} AS DOUBLE PRECISION)" for i in range(len(found)))
        values: dict[str, object] = {f"t{i}": term for i, term in enumerate(found)}
        values |= {f"w{i}": idf(n, df[term]) for i, term in enumerate(found)}
        length = "t.length" if self.lengths_in_terms else "c.length"
        join = "" if self.lengths_in_terms else "JOIN chunks c ON c.id = t.chunk_id"
        statement = text(
            f"SELECT t.chunk_id, sum((CASE t.term {weights} END) * t.tf * {K1 + 1} "
            f"/ (t.tf + {K1} * ({1 - B} + {B} * {length} / CAST(:avgdl AS DOUBLE PRECISION)))) AS score "
            f"FROM chunk_terms t {join} "
            f"WHERE t.user_id = :u AND t.term IN :terms {extra} "
            "GROUP BY t.chunk_id ORDER BY score DESC, t.chunk_id LIMIT :k"
        ).bindparams(bindparam("terms", expanding=True))
        if params:
            statement = statement.bindparams(bindparam("a", expanding=True))
        rows = await session.execute(statement, {
            **values, **params, "u": user_id, "terms": found, "k": k, "avgdl": max(float(avgdl), 1.0)})
        return [(int(c), float(s)) for c, s in rows]
