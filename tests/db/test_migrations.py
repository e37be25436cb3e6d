"""Migrations upgrade and downgrade cleanly on SQLite and PostgreSQL (with pgvector and without), and the
search index follows."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from convo.db import migrate
from convo.db.session import Database
from convo.runtime.vectors import EmbeddedVectors, PgVectors, VectorRow, vector_index
from tests.conftest import _drop_pg_database, _fresh_pg_database


@pytest.fixture(params=["sqlite", "postgresql", "postgresql-no-pgvector"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'convo.db'}"
        return
    plain = request.param == "postgresql-no-pgvector"
    pg = request.getfixturevalue("plain_pg_url" if plain else "pg_url")
    name = f"convo_migrations_{'nopgvector_' if plain else ''}{os.getpid()}"
    yield _fresh_pg_database(pg, name).replace("postgresql://", "postgresql+asyncpg://")
    if plain:  # the machine's own server: leave nothing behind
        _drop_pg_database(pg, name)


async def _run(url: str, *statements: str) -> list[list[tuple]]:
    # The app's Database: on SQLite its connections carry the function the index triggers call.
    engine = Database(url).engine
    results = []
    try:
        async with engine.begin() as conn:
            for statement in statements:
                result = await conn.execute(text(statement))
                results.append([tuple(r) for r in result] if result.returns_rows else [])
    finally:
        await engine.dispose()
    return results


def run(url: str, *statements: str) -> list[list[tuple]]:
    return asyncio.run(_run(url, *statements))


def key(user: int, kind: int, doc: int) -> int:
    """The document key of migrations 0002 and 0004: owner, kind (0 message, 1 thread title, 2 file chunk), id."""
    return user << 37 | kind << 34 | doc


def indexed(url: str) -> list[tuple]:
    if url.startswith("sqlite"):
        return run(
            url,
            "SELECT rowid, body FROM search_index UNION ALL SELECT rowid, body FROM search_files ORDER BY rowid",
        )[0]
    rows = run(
        url,
        "SELECT (user_id::bigint << 37) + (kind::bigint << 34) + doc_id, tsv::text FROM search_docs ORDER BY 1",
    )[0]
    return [(key, tsv) for key, tsv in rows]


def triggers(url: str) -> list[tuple]:
    if url.startswith("sqlite"):
        return run(url, "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'search%'")[0]
    return run(url, "SELECT DISTINCT tgname FROM pg_trigger WHERE tgname LIKE 'search%'")[0]


def test_every_head_keeps_the_search_triggers(tmp_path: Path) -> None:
    """A later migration that rebuilds `messages` or `threads` (SQLite batch mode copies and drops the
    table) would silently drop the triggers that keep search current; this catches it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'heads.db'}"
    migrate.upgrade(url)
    assert sorted(name for (name,) in triggers(url)) == [
        "search_chunk_delete",
        "search_chunk_insert",
        "search_message_delete",
        "search_message_insert",
        "search_message_update",
        "search_stats_chunk_delete",
        "search_stats_chunk_insert",
        "search_stats_message_delete",
        "search_stats_message_insert",
        "search_stats_message_update",
        "search_stats_thread_delete",
        "search_stats_thread_insert",
        "search_stats_thread_update",
        "search_thread_delete",
        "search_thread_insert",
        "search_thread_update",
    ]


def search_stats(url: str) -> list[tuple]:
    """Per user and corpus (0 messages and titles, 1 file chunks): documents and tokens (SQLite only)."""
    return run(url, "SELECT user_id, corpus, docs, tokens FROM search_stats ORDER BY user_id, corpus")[0]


def test_search_index_upgrades_backfills_and_downgrades(db_url: str) -> None:
    migrate.upgrade(db_url, "0001")
    run(
        db_url,
        "INSERT INTO users (id, email, name, password_hash, role, disabled, created_at) "
        "VALUES (1, 'a@example.com', '', 'x', 'user', false, '2026-01-01 00:00:00')",
        "INSERT INTO threads (id, user_id, title, created_at, updated_at) "
        "VALUES (1, 1, 'Café notes', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
        "INSERT INTO messages (id, thread_id, user_id, role, content, status, meta, event_seq, created_at, updated_at)"
        " VALUES (1, 1, 1, 'user', 'Grüße aus 東京都', 'complete', '{}', 0, '2026-01-01', '2026-01-01'),"
        " (2, 1, 1, 'assistant', 'half an answer', 'streaming', '{}', 0, '2026-01-01', '2026-01-01')",
    )
    migrate.upgrade(db_url, "0003")
    run(
        db_url,
        "INSERT INTO attachments (id, user_id, thread_id, filename, content_type, size, sha256, storage_path, "
        "status, chunk_count, created_at, updated_at) VALUES (1, 1, 1, 'lighthouse.md', 'text/markdown', 10, "
        "'x', '1/1', 'ready', 2, '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
        "INSERT INTO chunks (id, attachment_id, user_id, position, text, tokens, length, created_at) VALUES "
        "(1, 1, 1, 0, 'The keeper logs the beam', 5, 5, '2026-01-01'), "
        "(2, 1, 1, 1, 'Fog horn schedule', 3, 3, '2026-01-01')",
    )
    sqlite = db_url.startswith("sqlite")
    if sqlite:  # the FTS5 keyword table that 0010 turns into term statistics, as the app wrote it
        run(db_url, "INSERT INTO chunks_fts (rowid, terms) VALUES (1, 'keeper logs beam keeper'), (2, 'fog horn')")
    migrate.upgrade(db_url)
    assert migrate.is_current(db_url)
    assert len(triggers(db_url)) == (16 if sqlite else 8)
    if sqlite:
        assert run(db_url, "SELECT chunk_id, user_id, term, tf, length FROM chunk_terms ORDER BY chunk_id, term")[0] == [
            (1, 1, "beam", 1, 5), (1, 1, "keeper", 2, 5), (1, 1, "logs", 1, 5), (2, 1, "fog", 1, 3), (2, 1, "horn", 1, 3)]
        # "grusse aus 東京 京都 都" (5 tokens) and "cafe notes"; "lighthouse md the keeper logs the beam" and
        # "fog horn schedule".
        assert search_stats(db_url) == [(1, 0, 2, 7), (1, 1, 2, 10)]
    rows = indexed(db_url)
    # The existing message, title and file chunks are backfilled; the streaming answer is not indexed yet.
    assert [k for k, _ in rows] == [key(1, 0, 1), key(1, 1, 1), key(1, 2, 1), key(1, 2, 2)]
    assert "grusse" in rows[0][1] and "東京" in rows[0][1] and "京都" in rows[0][1]
    assert "cafe" in rows[1][1]
    # The file's name is searchable through its first chunk only.
    assert "lighthouse" in rows[2][1] and "keeper" in rows[2][1] and "lighthouse" not in rows[3][1]
    if not db_url.startswith("sqlite"):
        # Every lexeme is its owner's, and each document carries its month.
        assert "'1:grusse'" in rows[0][1] and "'1:@m202601'" in rows[0][1] and "'1:@title'" in rows[1][1]
    run(db_url, "DELETE FROM chunks WHERE id = 2")
    assert [k for k, _ in indexed(db_url)] == [key(1, 0, 1), key(1, 1, 1), key(1, 2, 1)]

    run(db_url, "UPDATE messages SET content = 'the whole answer', status = 'complete' WHERE id = 2")
    assert [k for k, _ in indexed(db_url)] == [key(1, 0, 1), key(1, 0, 2), key(1, 1, 1), key(1, 2, 1)]
    run(db_url, "UPDATE threads SET title = 'Café notes, revised' WHERE id = 1")
    if sqlite:  # the statistics follow the index
        assert search_stats(db_url) == [(1, 0, 3, 11), (1, 1, 1, 7)]
        # Deletes need none of the app's SQL functions: an operator's sqlite3 shell can still make them.
        with sqlite3.connect(db_url.removeprefix("sqlite+aiosqlite:///")) as conn:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("DELETE FROM threads WHERE id = 1")
        assert search_stats(db_url) == [(1, 0, 0, 0), (1, 1, 0, 0)]
    else:
        run(db_url, "DELETE FROM threads WHERE id = 1")  # cascades to its messages, files and their chunks
    assert indexed(db_url) == []

    migrate.downgrade(db_url, "0001")
    tables = (
        "SELECT name FROM sqlite_master WHERE name LIKE 'search%'"
        if db_url.startswith("sqlite")
        else "SELECT tablename FROM pg_tables WHERE tablename LIKE 'search%'"
    )
    assert run(db_url, tables)[0] == []
    # Without the index the schema still takes writes: no trigger is left behind.
    run(
        db_url,
        "INSERT INTO threads (id, user_id, title, created_at, updated_at) "
        "VALUES (2, 1, 'plain', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
    )
    migrate.upgrade(db_url)
    assert [k for k, _ in indexed(db_url)] == [key(1, 1, 2)]


def test_the_spending_ledger_starts_with_what_finished_answers_cost(db_url: str) -> None:
    migrate.upgrade(db_url, "0006")
    run(
        db_url,
        "INSERT INTO users (id, email, name, password_hash, role, disabled, created_at) "
        "VALUES (1, 'a@example.com', '', 'x', 'user', false, '2026-01-01 00:00:00')",
        "INSERT INTO threads (id, user_id, title, created_at, updated_at) "
        "VALUES (1, 1, 't', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
        "INSERT INTO messages (id, thread_id, user_id, role, content, status, meta, event_seq, cost_usd, "
        "reserved_usd, created_at, updated_at) VALUES "
        "(1, 1, 1, 'user', 'q', 'complete', '{}', 0, NULL, NULL, '2026-03-04 23:59:00', '2026-03-04 23:59:00'),"
        "(2, 1, 1, 'assistant', 'a', 'complete', '{}', 0, 0.25, NULL, '2026-03-04 23:59:00', '2026-03-04'),"
        "(3, 1, 1, 'assistant', 'b', 'complete', '{}', 0, -5, NULL, '2026-03-05 00:00:01', '2026-03-05'),"
        "(4, 1, 1, 'assistant', 'c', 'streaming', '{}', 0, NULL, 0.5, '2026-03-05 00:00:01', '2026-03-05')",
    )
    migrate.upgrade(db_url)
    rows = run(db_url, "SELECT user_id, CAST(day AS TEXT), message_id, cost_usd FROM spend ORDER BY id")[0]
    # A negative figure (only an import could have written one) is not carried into the ledger.
    assert rows == [(1, "2026-03-04", 2, 0.25)]
    assert run(db_url, "SELECT attempts FROM attachments")[0] == []
    migrate.downgrade(db_url, "0006")
    migrate.upgrade(db_url)


# A user with one file of three chunks (ids 1, 2, 3), for the vector index to hold.
ONE_FILE = (
    "INSERT INTO users (id, email, name, password_hash, role, disabled, created_at) "
    "VALUES (1, 'a@example.com', '', 'x', 'user', false, '2026-01-01 00:00:00')",
    "INSERT INTO threads (id, user_id, title, created_at, updated_at) "
    "VALUES (1, 1, 't', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
    "INSERT INTO attachments (id, user_id, thread_id, filename, content_type, size, sha256, storage_path, "
    "status, chunk_count, created_at, updated_at) VALUES (1, 1, 1, 'a.txt', 'text/plain', 1, 'x', '1/1', "
    "'ready', 3, '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
    "INSERT INTO chunks (attachment_id, user_id, position, text, tokens, length, created_at) VALUES "
    "(1, 1, 0, 'a', 1, 1, '2026-01-01'), (1, 1, 1, 'b', 1, 1, '2026-01-01'), (1, 1, 2, 'c', 1, 1, '2026-01-01')",
)


def test_the_vector_table_is_what_the_database_can_hold(db_url: str, request: pytest.FixtureRequest) -> None:
    """pgvector where the extension is available, float32 blobs elsewhere; the app finds out which from the
    column, and the blob index works the same on PostgreSQL as on SQLite."""
    backend = request.node.callspec.params["db_url"]
    migrate.upgrade(db_url)
    if backend == "sqlite":
        column = run(db_url, "SELECT type FROM pragma_table_info('chunk_vectors') WHERE name = 'embedding'")[0]
        hnsw: list[tuple] = []
    else:
        column, hnsw = run(
            db_url,
            "SELECT t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = 'chunk_vectors'::regclass AND a.attname = 'embedding'",
            "SELECT indexname FROM pg_indexes WHERE indexname = 'ix_chunk_vectors_hnsw'",
        )
    expected = {"sqlite": "BLOB", "postgresql": "vector", "postgresql-no-pgvector": "bytea"}[backend]
    assert column == [(expected,)]
    assert (hnsw == [("ix_chunk_vectors_hnsw",)]) == (backend == "postgresql")

    run(db_url, *ONE_FILE)
    basis = np.eye(384, dtype=np.float32)

    async def scenario() -> list[object]:
        db = Database(db_url)
        try:
            async with db.read() as session:
                index = await vector_index(session)
            async with db.write() as session:
                await index.add(session, [VectorRow(c, 1, 1, basis[c]) for c in (1, 2, 3)])
            async with db.read() as session:
                before = await index.search(session, 1, basis[2], 3, None)
            async with db.write() as session:
                await session.execute(text("DELETE FROM chunks WHERE id = 2"))
            async with db.read() as session:  # the cached matrix must notice the delete
                after = await index.search(session, 1, basis[2], 3, None)
                scores = await index.scores(session, 1, basis[3], [1, 2, 3])
            return [index, before, after, scores]
        finally:
            await db.close()

    index, before, after, scores = asyncio.run(scenario())
    assert isinstance(index, PgVectors if backend == "postgresql" else EmbeddedVectors)
    assert before[0] == (2, pytest.approx(1.0))
    assert sorted(c for c, _ in after) == [1, 3] and all(s == pytest.approx(0.0, abs=1e-6) for _, s in after)
    assert scores == {1: pytest.approx(0.0, abs=1e-6), 3: pytest.approx(1.0)}

    migrate.downgrade(db_url, "base")
    migrate.upgrade(db_url)
    assert migrate.is_current(db_url)
    assert run(db_url, "SELECT count(*) FROM chunk_vectors")[0] == [(0,)]


def test_deploy_pgvector_sql_moves_blobs_onto_pgvector(pg_url: str) -> None:
    """A database migrated without pgvector, on a server that has since gained it: the documented script
    turns the blobs into the pgvector column and index, and searches find the same chunks."""
    import psycopg

    admin = _fresh_pg_database(pg_url, f"convo_pgvector_sql_{os.getpid()}")
    url = admin.replace("postgresql://", "postgresql+asyncpg://")
    migrate.upgrade(url)
    # What migration 0003 makes without pgvector (the pgvector test server cannot hide the extension).
    run(url, "DROP INDEX ix_chunk_vectors_hnsw",
        "ALTER TABLE chunk_vectors ALTER COLUMN embedding TYPE bytea USING NULL", "DROP EXTENSION vector",
        *ONE_FILE)
    vectors = np.random.default_rng(7).standard_normal((3, 384)).astype(np.float32)
    vectors[2, :4] = [0.0, 1e-39, -2.5e-39, 3.0]  # zero, subnormals and a sign: the decoder's corners
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # unit length, as Convo stores them
    assert 0 < abs(vectors[2, 1]) < np.finfo(np.float32).tiny
    query = vectors[0] + vectors[1]

    async def search() -> tuple[object, list[tuple[int, float]], list[tuple[int, float]]]:
        db = Database(url)
        try:
            async with db.read() as session:
                index = await vector_index(session)
                if isinstance(index, EmbeddedVectors):
                    async with db.write() as writer:
                        await index.add(writer, [VectorRow(c, 1, 1, vectors[c - 1]) for c in (1, 2, 3)])
                stored = [(int(c), e) for c, e in (await session.execute(
                    text("SELECT chunk_id, embedding FROM chunk_vectors ORDER BY chunk_id"))).all()]
                hits = await index.search(session, 1, query / np.linalg.norm(query), 3, None)
            return index, stored, hits
        finally:
            await db.close()

    before, _, blob_hits = asyncio.run(search())
    assert isinstance(before, EmbeddedVectors)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute((Path(__file__).parents[2] / "deploy" / "pgvector.sql").read_text())
    after, stored, pg_hits = asyncio.run(search())
    assert isinstance(after, PgVectors)
    # Every float32 comes through bit for bit.
    for chunk_id, embedding in stored:
        parsed = np.array(embedding.strip("[]").split(","), dtype=np.float32)
        assert parsed.tobytes() == vectors[chunk_id - 1].tobytes(), chunk_id
    assert [c for c, _ in pg_hits] == [c for c, _ in blob_hits]
    assert [s for _, s in pg_hits] == pytest.approx([s for _, s in blob_hits], abs=1e-5)
    assert run(url, "SELECT indexname FROM pg_indexes WHERE indexname = 'ix_chunk_vectors_hnsw'")[0] != []
