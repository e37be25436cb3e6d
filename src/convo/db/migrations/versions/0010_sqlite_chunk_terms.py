"""SQLite keeps BM25 term statistics per user, as PostgreSQL does (`chunk_terms`), instead of FTS5;
chunks are indexed by user and length on both

FTS5's `bm25()` counts documents over the whole table, every user's chunks together, so a user could
read from their own scores how many of other users' chunks hold a word (security review M1). The
FTS5 table is replaced by the term-statistics table PostgreSQL already has; its rows are rebuilt from
the terms the FTS5 table stored (exactly the words `terms()` made, space-separated).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 2000


def upgrade() -> None:
    # Both backends: the user's chunk count and average length, read by every keyword query, become
    # index-only (SciFact: 10-45 ms -> 0.7 ms on SQLite, which read every chunk's row, text and all).
    op.drop_index("ix_chunks_user", "chunks")
    op.create_index("ix_chunks_user", "chunks", ["user_id", "length"])
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    # Clustered by chunk for the cascade on delete; the covering index answers a user's postings of a
    # term (document frequencies, term frequencies and the chunks' lengths) without touching the table.
    # The length repeats the chunk's (chunks never change): reading it from `chunks`, whose rows hold
    # the text, for every posting made queries 50% slower.
    op.execute("""CREATE TABLE chunk_terms (
        chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL,
        term TEXT NOT NULL,
        tf INTEGER NOT NULL,
        length INTEGER NOT NULL,
        PRIMARY KEY (chunk_id, term)) WITHOUT ROWID""")
    select = sa.text("SELECT c.id, c.user_id, c.length, f.terms FROM chunks c JOIN chunks_fts f ON f.rowid = c.id "
                     "WHERE c.id > :last ORDER BY c.id LIMIT :n")
    insert = sa.text("INSERT INTO chunk_terms (chunk_id, user_id, term, tf, length) VALUES (:c, :u, :t, :tf, :l)")
    last = 0
    while batch := bind.execute(select, {"last": last, "n": BATCH}).all():
        bind.execute(insert, [{"c": chunk_id, "u": user_id, "t": term, "tf": tf, "l": length}
                              for chunk_id, user_id, length, words in batch
                              for term, tf in Counter(words.split()).items()])
        last = batch[-1][0]
    op.execute("CREATE INDEX ix_chunk_terms_user_term ON chunk_terms (user_id, term, chunk_id, tf, length)")
    op.execute("DROP TRIGGER chunks_fts_delete")
    op.execute("DROP TABLE chunks_fts")


def downgrade() -> None:
    op.drop_index("ix_chunks_user", "chunks")
    op.create_index("ix_chunks_user", "chunks", ["user_id"])
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("CREATE VIRTUAL TABLE chunks_fts USING fts5(terms, tokenize = 'unicode61 remove_diacritics 0')")
    op.execute("""CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
        DELETE FROM chunks_fts WHERE rowid = old.id;
        END""")
    # Word order is lost, which BM25 never used: each term repeated tf times.
    rows = op.get_bind().execute(sa.text("SELECT chunk_id, term, tf FROM chunk_terms ORDER BY chunk_id")).all()
    docs: dict[int, list[str]] = {}
    for chunk_id, term, tf in rows:
        docs.setdefault(chunk_id, []).extend([term] * tf)
    if docs:
        op.get_bind().execute(sa.text("INSERT INTO chunks_fts (rowid, terms) VALUES (:id, :terms)"),
                              [{"id": chunk_id, "terms": " ".join(words)} for chunk_id, words in docs.items()])
    op.execute("DROP TABLE chunk_terms")
