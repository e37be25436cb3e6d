"""Search over everything a user has written or been answered: messages, thread titles and the text of
uploaded files.

The index is maintained by database triggers (migrations 0002, 0004 and 0011), so this module only reads. A
query is parsed here into terms that are always handed to the engine as quoted text, never as operators, so no
input can produce an engine syntax error: words are ANDed, "quoted phrases" and prefix* work, anything
else is literal text. Relevance is BM25 over the user's own documents (SQLite: FTS5 finds the matches,
`convo_bm25()` scores them) or cover density (`ts_rank_cd`, PostgreSQL, which reads only the document),
times a mild recency boost; snippets are cut and highlighted here from the original text. No score
depends on another user's documents: FTS5's own bm25() counted every user's (security review M1).

Ranking trade-offs, for p95 <= 30 ms at a million messages: only the newest CANDIDATES matches of a query
are ranked (titles first; files have their own CANDIDATES on SQLite). On SQLite a query holding a "phrase"
or a prefix* ranks those by recency alone, because counting a phrase's or prefix's documents checks
positions or merges expansions over all of them (with FTS5's bm25(), over every user's: 140 -> 11 ms
p95 for phrases, 58 -> 31 ms for prefixes, bench/search.py). On PostgreSQL the index holds owner-prefixed
lexemes and a month lexeme per document (migration 0004), and the newest matches are read a few months
at a time (Search._pg_sql): without both, a common word read every user's postings and then every one
of its matches from the table (1M messages, common words: p95 69 -> 40 ms with PostgreSQL's default
128 MB of shared_buffers, 23 ms with 1 GB).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from convo.db.models import User
from convo.db.search_text import CJK_CLASS, CJK_RUN, INDEX_TOKEN, fold, index_text
from convo.db.session import Database
from convo.domain.threads import owned_thread
from convo.errors import InvalidInput
from convo.observability import SEARCH

# Document kinds and the key layout of migrations 0002 and 0004: owner << 37 | kind << 34 | document id
# (an attachment's document is one of its chunks).
MESSAGE, THREAD, ATTACHMENT = 0, 1, 2
USER_SHIFT, KIND_SHIFT = 37, 34
DOC_MASK = (1 << KIND_SHIFT) - 1
# The corpora of SQLite's per-user statistics (migration 0011): `search_index` and `search_files`.
CHATS, FILES = 0, 1
# How many of the newest matches are ranked. BM25 and recency cost a few microseconds a match; a word in
# every tenth message of a big history would otherwise rank tens of thousands. Rarer queries rank every
# match; a very common one ranks its newest (titles first), and dates or more words reach older ones.
CANDIDATES = 1000
# PostgreSQL reads matches newest first, in windows of whole months (see Search._pg_sql).
WINDOW_MONTHS = (1, 1, 2, 4, 8)

# Beyond this many terms a query is not narrowed further: each term is one more posting list to walk.
MAX_TERMS = 32
MAX_TERM_CHARS = 200
# Recency: a document written now scores (1 + BOOST) times its relevance, one HALF_LIFE_DAYS old
# (1 + BOOST/2) times; old ones tend to 1. Mild on purpose: relevance decides, age breaks near-ties.
BOOST = 0.3
HALF_LIFE_DAYS = 30.0
SNIPPET_CHARS = 200

_WORD_CHAR = re.compile(r"[^\W_]")
_TOKEN = re.compile(rf"[{CJK_CLASS}]+|[^\W_]+")
_TRAILING_CJK = re.compile(rf"[{CJK_CLASS}]+\s*$")
_LAST_WORD = re.compile(r"[^\W_]+\s*$")


@dataclass(frozen=True)
class Term:
    """One ANDed part of a query: a word, a phrase, or a prefix."""

    text: str
    phrase: bool = False
    prefix: bool = False

    def query_text(self) -> tuple[str, bool]:
        """The folded text to look up and whether its last token is a prefix.

        Indexed CJK runs end with their last character as a lone token; a query run at the end of a term
        must leave that token out ("東京" is inside "東京都"), and a single character is a prefix."""
        folded = fold(self.text)
        prefix = self.prefix
        tail = _TRAILING_CJK.search(folded)
        if tail:
            run = tail.group().strip()
            head = index_text(folded[: tail.start()])
            if len(run) == 1:
                return f"{head} {run}", True
            bigrams = [run[i : i + 2] for i in range(len(run) - 1)]
            return f"{head} {' '.join(bigrams)}", prefix
        return index_text(folded), prefix


def parse_query(q: str) -> list[Term]:
    """Split user input into terms; quotes pair up, a lone quote opens a phrase to the end."""
    # Control characters separate words; lone surrogates (valid JSON, invalid UTF-8) are dropped.
    q = "".join(max(ch, " ") for ch in q if not "\ud800" <= ch <= "\udfff")
    terms: list[Term] = []
    parts = q.split('"')
    for index, part in enumerate(parts):
        inside = index % 2 == 1
        if inside:
            candidates = [Term(part.strip(), phrase=True)]
        else:
            candidates = []
            for word in part.split():
                stripped = word.rstrip("*")
                candidates.append(Term(stripped, prefix=stripped != word))
        for term in candidates:
            if _WORD_CHAR.search(term.text) and len(terms) < MAX_TERMS:
                terms.append(Term(term.text[:MAX_TERM_CHARS], term.phrase, term.prefix))
    return terms


def _fts5_string(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def fts5_match(terms: list[Term]) -> str:
    """An FTS5 MATCH expression over the `body` column: every term a quoted string."""
    parts = []
    for term in terms:
        value, prefix = term.query_text()
        parts.append(_fts5_string(value.strip()) + (" *" if prefix else ""))
    return "body : (" + " AND ".join(parts) + ")"


def _pg_tsquery(terms: list[Term], params: dict[str, Any]) -> str:
    """SQL building a tsquery; the parser of `phraseto_tsquery` sees the text just as the index did."""
    parts = []
    for i, term in enumerate(terms):
        value, prefix = term.query_text()
        last = _LAST_WORD.search(value) if prefix else None
        if last is None:
            params[f"t{i}"] = value
            parts.append(f"phraseto_tsquery('simple', :t{i})")
            continue
        head = value[: last.start()]
        params[f"p{i}"] = last.group().strip() + ":*"
        prefix_sql = f"to_tsquery('simple', :p{i})"
        if _WORD_CHAR.search(head):
            params[f"t{i}"] = head
            prefix_sql = f"tsquery_phrase(phraseto_tsquery('simple', :t{i}), {prefix_sql})"
        parts.append(prefix_sql)
    return "(" + " && ".join(parts) + ")"


def _needles(terms: list[Term]) -> re.Pattern[str] | None:
    """A pattern for the folded tokens of the query, to mark in folded document text."""
    pieces: set[str] = set()
    for term in terms:
        # Whole CJK runs, not their bigrams: overlapping bigrams would mark only every other one.
        tokens = _TOKEN.findall(fold(term.text))
        for n, token in enumerate(tokens):
            if CJK_RUN.fullmatch(token):
                pieces.add(re.escape(token))
            elif term.prefix and n == len(tokens) - 1:
                pieces.add(rf"(?<![^\W_]){re.escape(token)}[^\W_]*")
            else:
                pieces.add(rf"(?<![^\W_]){re.escape(token)}(?![^\W_])")
    if not pieces:
        return None
    return re.compile("|".join(sorted(pieces, key=len, reverse=True)))


def highlight(source: str, terms: list[Term], width: int = SNIPPET_CHARS) -> str:
    """HTML-escaped text around the first match, with `<mark>` around every match in it."""
    source = " ".join(source.split())
    folded = fold(source)
    origin: list[int] | range = range(len(source))
    if len(folded) != len(source):  # a letter folded to two (ß -> ss): map positions one by one
        pieces = [fold(ch) for ch in source]
        folded = "".join(pieces)
        origin = [i for i, piece in enumerate(pieces) for _ in piece]
    pattern = _needles(terms)
    spans: list[tuple[int, int]] = []
    if pattern is not None:
        for match in pattern.finditer(folded):
            if match.end() > match.start():
                start, end = origin[match.start()], origin[match.end() - 1] + 1
                if spans and start <= spans[-1][1]:
                    spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
                else:
                    spans.append((start, end))
    begin, stop = 0, len(source)
    if len(source) > width:
        first = spans[0][0] if spans else 0
        begin = max(0, first - width // 3)
        space = source.rfind(" ", max(0, begin - 20), begin + 1)
        begin = space + 1 if space >= 0 and begin > 0 else begin
        stop = min(len(source), begin + width)
        space = source.find(" ", stop - 20 if stop < len(source) else stop, stop)
        stop = space if stop < len(source) and space > begin else stop
    out = ["…"] if begin > 0 else []
    cursor = begin
    for start, end in spans:
        if end <= begin or start >= stop:
            continue
        start, end = max(start, begin), min(end, stop)
        out.append(html.escape(source[cursor:start]))
        out.append(f"<mark>{html.escape(source[start:end])}</mark>")
        cursor = end
    out.append(html.escape(source[cursor:stop]))
    if stop < len(source):
        out.append("…")
    return "".join(out)


@dataclass
class Hit:
    kind: str
    thread_id: int
    thread_title: str
    message_id: int | None
    role: str | None
    snippet: str
    score: float
    created_at: datetime
    attachment_id: int | None = None
    filename: str | None = None


@dataclass
class Filters:
    thread_id: int | None = None
    role: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _encode_cursor(now: float, score: float, key: int) -> str:
    raw = json.dumps([now, score, key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, float, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        now, score, key = json.loads(raw)
        now, score, key = float(now), float(score), int(key)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("Invalid cursor.", code="invalid_cursor") from exc
    # (`now` within the years a message can have: it becomes a date when PostgreSQL picks its months.)
    if not (math.isfinite(now) and math.isfinite(score) and 0 <= now < 32_503_680_000 and 0 <= key < 2**63):
        raise InvalidInput("Invalid cursor.", code="invalid_cursor")
    return now, score, key


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# Hyperbolic rather than exponential decay: SQLite may be built without math functions.
_RECENCY = f"(1.0 + {BOOST} * {HALF_LIFE_DAYS} / ({HALF_LIFE_DAYS} + {{greatest}}(0.0, {{now}} - {{created}}) / 86400.0))"


class Search:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def search(
        self,
        user: User,
        q: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        filters: Filters | None = None,
    ) -> tuple[list[Hit], str | None]:
        started = time.perf_counter()
        try:
            return await self._search(user, q, limit, cursor, filters or Filters())
        finally:
            SEARCH.observe(time.perf_counter() - started)

    async def _search(
        self, user: User, q: str, limit: int, cursor: str | None, filters: Filters
    ) -> tuple[list[Hit], str | None]:
        if filters.since and filters.until and filters.since > filters.until:
            raise InvalidInput("`from` is after `to`.", code="invalid_range")
        now, after = time.time(), None
        if cursor:
            now, *rest = _decode_cursor(cursor)
            after = (rest[0], rest[1])
        terms = parse_query(q)
        async with self.db.read() as session:
            if filters.thread_id is not None:
                await owned_thread(session, user, filters.thread_id)
            if not terms:
                return [], None
            params: dict[str, Any] = {"now": now, "limit": limit + 1}
            if self.db.is_sqlite:
                sql = self._sqlite_sql(user, terms, filters, after, params)
            else:
                # Parallel workers would start every window of the query at once (see _pg_sql).
                await session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
                sql = self._pg_sql(user, terms, filters, after, params, now)
            rows = (await session.execute(text(sql), params)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            hits = await self._hydrate(session, user, terms, [(int(r.key), float(r.score)) for r in rows])
        next_cursor = _encode_cursor(now, float(rows[-1].score), int(rows[-1].key)) if more else None
        return hits, next_cursor

    @staticmethod
    def _sqlite_sql(
        user: User,
        terms: list[Term],
        filters: Filters,
        after: tuple[float, int] | None,
        params: dict[str, Any],
    ) -> str:
        match = fts5_match(terms)
        if filters.thread_id is not None:
            match = f"tags : t{filters.thread_id} AND {match}"
        params["match"] = match
        # This user's rowid range: FTS5 seeks into it and walks it newest first.
        first = user.id << USER_SHIFT
        where = []
        if filters.since:
            where.append("created_at >= :since")
            params["since"] = _epoch(filters.since)
        if filters.until:
            where.append("created_at < :until")
            params["until"] = _epoch(filters.until)
        recency = _RECENCY.format(greatest="max", now=":now", created="created_at")
        # Queries with a "phrase" or a prefix* rank their candidates by recency alone (module docstring).
        ranked = _bm25_ranks(terms)
        if ranked:
            params["user_id"] = user.id
            params["bm25_terms"] = json.dumps([INDEX_TOKEN.findall(term.query_text()[0]) for term in terms])
            for i, term in enumerate(terms):
                params[f"df{i}"] = "body : " + _fts5_string(term.query_text()[0].strip())

        def bm25(table: str, corpus: int, low: int, high: int) -> str:
            """BM25 over the user's own documents (security review M1: FTS5's bm25() counts every user's).
            The statistics are subqueries that SQLite runs once per statement: each term's documents
            counted in the user's rowid range (the user's postings only), and the user's document count
            and total length, which triggers keep (migration 0011)."""
            stats = [f"(SELECT {column} FROM search_stats WHERE user_id = :user_id AND corpus = {corpus})"
                     for column in ("docs", "tokens")]
            dfs = [f"(SELECT count(*) FROM {table} WHERE {table} MATCH :df{i} AND rowid BETWEEN {low} AND {high})"
                   for i in range(len(terms))]
            size = f"(SELECT sz FROM {table}_docsize WHERE id = {table}.rowid)"
            return f"convo_bm25(body, {size}, :bm25_terms, {', '.join(stats + dfs)})"

        def candidates(table: str, corpus: int, low: int, high: int, extra: list[str]) -> str:
            relevance = bm25(table, corpus, low, high) if ranked else "1.0"
            conditions = " AND ".join([f"{table} MATCH :match", f"rowid BETWEEN {low} AND {high}", *where, *extra])
            return (
                f"SELECT key, relevance * {recency} AS score FROM ("
                f"SELECT rowid AS key, created_at, {relevance} AS relevance "
                f"FROM {table} WHERE {conditions} ORDER BY rowid DESC LIMIT {CANDIDATES})"
            )

        messages_and_titles = (first, first + (ATTACHMENT << KIND_SHIFT) - 1)
        if filters.role:
            params["role"] = filters.role
            return Search._page(candidates("search_index", CHATS, *messages_and_titles, ["role = :role"]), after, params)
        files = (first + (ATTACHMENT << KIND_SHIFT), first + ((ATTACHMENT + 1) << KIND_SHIFT) - 1)
        inner = (
            f"{candidates('search_index', CHATS, *messages_and_titles, [])} UNION ALL "
            f"{candidates('search_files', FILES, *files, [])}"
        )
        return Search._page(inner, after, params)

    @staticmethod
    def _pg_sql(
        user: User,
        terms: list[Term],
        filters: Filters,
        after: tuple[float, int] | None,
        params: dict[str, Any],
        now: float,
    ) -> str:
        params["user_id"] = user.id
        # Every lexeme of a document carries its owner (migration 0004), so the query's must too: this
        # is both the ownership condition and what keeps the GIN scan within this user's postings.
        words = _pg_tsquery(terms, params)
        if filters.thread_id is not None:
            params["thread"] = f"@t{filters.thread_id}"
            words = f"({words} && CAST(quote_literal(:thread) AS tsquery))"
        conditions = []
        if filters.role:
            conditions.append("d.role = :role")
            params["role"] = filters.role
        if filters.since:
            conditions.append("d.created_at >= :since")
            params["since"] = filters.since
        if filters.until:
            conditions.append("d.created_at < :until")
            params["until"] = filters.until
        # Titles first (as SQLite's rowid order has them), then messages and files newest first, a few
        # months at a time: each window ANDs its month lexemes to the query, and the Append below runs
        # its branches in order under the LIMIT, so the first windows that hold CANDIDATES matches end
        # the scan. A word in every tenth message of a long history then reads ~1,500 rows instead of
        # all its matches, and a rare word costs a few cheap GIN probes.
        windows: list[tuple[str, list[str]]] = [("CAST('''@title''' AS tsquery)", [])]
        for n, (months, before) in enumerate(_month_windows(now, filters.since, filters.until)):
            where = [f"d.kind <> {THREAD}"]
            if before is not None:
                params[f"before{n}"] = before
                where.append(f"d.created_at < :before{n}")
            if months:
                params[f"m{n}"] = " | ".join(f"'@m{month}'" for month in months)
                windows.append((f"CAST(:m{n} AS tsquery)", where))
            else:
                windows.append(("", where))
        branches = []
        for lexemes, where in windows:
            match = f"{words} && {lexemes}" if lexemes else words
            condition = " AND ".join([f"d.tsv @@ convo_owned_tsquery(:user_id, {match})", *conditions, *where])
            branches.append(
                f"(SELECT (d.user_id::bigint << {USER_SHIFT}) + (d.kind::bigint << {KIND_SHIFT}) + d.doc_id AS key, "
                f"d.created_at, d.tsv FROM search_docs d WHERE {condition} ORDER BY d.created_at DESC)"
            )
        recency = _RECENCY.format(
            greatest="greatest",
            now="CAST(:now AS float8)",
            created="extract(epoch FROM c.created_at)::float8",
        )
        inner = (
            f"SELECT c.key, ts_rank_cd(c.tsv, convo_owned_tsquery(:user_id, {words}), 1)::float8 * {recency} "
            f"AS score FROM (SELECT * FROM ({' UNION ALL '.join(branches)}) w LIMIT {CANDIDATES}) c"
        )
        return Search._page(inner, after, params)

    @staticmethod
    def _page(inner: str, after: tuple[float, int] | None, params: dict[str, Any]) -> str:
        condition = ""
        if after is not None:
            params["after_score"], params["after_key"] = after
            condition = (
                "WHERE score < CAST(:after_score AS float8) "
                "OR (score = CAST(:after_score AS float8) AND key < CAST(:after_key AS bigint)) "
            )
        return (
            f"SELECT key, score FROM ({inner}) ranked {condition}ORDER BY score DESC, key DESC LIMIT :limit"
        )

    @staticmethod
    async def _hydrate(
        session: Any, user: User, terms: list[Term], ranked: list[tuple[int, float]]
    ) -> list[Hit]:
        """Load what the page shows. The owner is checked again, here rather than in SQL: a `user_id`
        condition leads SQLite's planner to walk the user's whole index instead of the primary keys."""

        async def load(kind: int, sql: str) -> dict[int, Any]:
            ids = [key & DOC_MASK for key, _ in ranked if _kind_of(key) == kind]
            if not ids:
                return {}
            rows = await session.execute(text(sql.format(ids=", ".join(str(i) for i in ids))))
            return {r.id: r for r in rows if r.user_id == user.id}

        messages = await load(
            MESSAGE,
            "SELECT m.id, m.user_id, m.thread_id, m.role, m.content, m.created_at, t.title "
            "FROM messages m JOIN threads t ON t.id = m.thread_id WHERE m.id IN ({ids})",
        )
        threads = await load(THREAD, "SELECT id, user_id, title, updated_at FROM threads WHERE id IN ({ids})")
        chunks = await load(
            ATTACHMENT,
            "SELECT c.id, c.user_id, c.text, a.id AS attachment_id, a.filename, a.thread_id, a.created_at, "
            "t.title FROM chunks c JOIN attachments a ON a.id = c.attachment_id "
            "JOIN threads t ON t.id = a.thread_id WHERE c.id IN ({ids})",
        )
        hits: list[Hit] = []
        files_seen: set[int] = set()
        for key, score in ranked:
            doc_id, kind, score = key & DOC_MASK, _kind_of(key), round(score, 6)
            if kind == MESSAGE and doc_id in messages:
                m = messages[doc_id]
                hits.append(Hit("message", m.thread_id, m.title, m.id, m.role, highlight(m.content, terms),
                                score, _as_utc(m.created_at)))
            elif kind == THREAD and doc_id in threads:
                t = threads[doc_id]
                hits.append(Hit("thread", t.id, t.title, None, None, highlight(t.title, terms), score,
                                _as_utc(t.updated_at)))
            elif kind == ATTACHMENT and doc_id in chunks:
                c = chunks[doc_id]
                # A file shows once a page, at its best chunk: overlapping chunks often match together.
                if c.attachment_id in files_seen:
                    continue
                files_seen.add(c.attachment_id)
                hits.append(Hit("attachment", c.thread_id, c.title, None, None, highlight(c.text, terms), score,
                                _as_utc(c.created_at), attachment_id=c.attachment_id, filename=c.filename))
        return hits


def _bm25_ranks(terms: list[Term]) -> bool:
    """Whether BM25 ranks the query: not with a "phrase" or a prefix, whose document frequencies would
    cost checking positions or merging expansions over all of the user's documents (module docstring)."""
    return not any(term.phrase or term.query_text()[1] for term in terms)


def _month_windows(
    now: float, since: datetime | None, until: datetime | None
) -> list[tuple[list[str], datetime | None]]:
    """Newest-first windows of whole UTC months ("202611"), WINDOW_MONTHS long, within [since, until);
    then one window without month lexemes for everything older, bounded by its `before`."""
    last = _aware(until) - timedelta(microseconds=1) if until else datetime.fromtimestamp(now, UTC)
    newest, oldest = _month_number(last), _month_number(_aware(since)) if since else None
    windows: list[tuple[list[str], datetime | None]] = []
    month = newest
    for size in WINDOW_MONTHS:
        months = [m for m in range(month, month - size, -1) if oldest is None or m >= oldest]
        if not months:
            return windows
        windows.append(([f"{m // 12:04d}{m % 12 + 1:02d}" for m in months], None))
        month -= size
    if oldest is None or oldest <= month:
        windows.append(([], _month_start(month + 1)))
    return windows


def _month_number(moment: datetime) -> int:
    return moment.year * 12 + moment.month - 1


def _month_start(number: int) -> datetime:
    return datetime(number // 12, number % 12 + 1, 1, tzinfo=UTC)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _kind_of(key: int) -> int:
    return (key >> KIND_SHIFT) & 7


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
