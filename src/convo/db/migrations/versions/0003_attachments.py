"""attachments, chunks, and their keyword and vector indexes

SQLite: an FTS5 table over each chunk's keyword terms (rowid = chunk id) for `bm25()`, and float32
blobs for vectors. PostgreSQL: a term-statistics table for BM25, and pgvector with an HNSW index; a
PostgreSQL without the pgvector extension gets float32 blobs (`bytea`) like SQLite, and the app then
searches them exactly in Python (runtime/vectors.py picks the index by the column's type).

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIMENSIONS = 384


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    pgvector = postgres and bool(op.get_bind().execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    ).scalar())
    if pgvector:
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    elif postgres:
        logging.getLogger(__name__).warning(
            "This PostgreSQL has no pgvector extension: file retrieval will score vectors exactly in each Convo "
            "process, with each user's vectors in memory. See docs/retrieval.md to move to pgvector later.")

    op.create_table(
        "attachments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("thread_id", sa.Integer(), sa.ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("storage_path", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_attachments_thread", "attachments", ["thread_id", "id"])
    op.create_index("ix_attachments_user", "attachments", ["user_id"])
    op.create_table(
        "chunks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("attachment_id", sa.Integer(), sa.ForeignKey("attachments.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        # Ids are never reused (AUTOINCREMENT here, a sequence on PostgreSQL), so the embedded vector
        # cache can tell any change by (count, max id).
        sqlite_autoincrement=True,
    )
    op.create_index("ix_chunks_attachment", "chunks", ["attachment_id", "position"])
    op.create_index("ix_chunks_user", "chunks", ["user_id"])

    if pgvector:
        op.execute(f"""CREATE TABLE chunk_vectors (
            chunk_id integer PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
            user_id integer NOT NULL,
            attachment_id integer NOT NULL,
            embedding vector({DIMENSIONS}) NOT NULL)""")
        op.execute("CREATE INDEX ix_chunk_vectors_hnsw ON chunk_vectors USING hnsw (embedding vector_cosine_ops)")
        op.execute("CREATE INDEX ix_chunk_vectors_user ON chunk_vectors (user_id, attachment_id)")
    else:
        op.execute(f"""CREATE TABLE chunk_vectors (
            chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL,
            attachment_id INTEGER NOT NULL,
            embedding {"bytea" if postgres else "BLOB"} NOT NULL)""")
        # The cache check on every query, count and max chunk id of a user's rows, then reads this index
        # alone: SQLite's indexes hold the rowid (the chunk id); PostgreSQL's must include it, else the
        # check reads every blob of the user (240 ms instead of 19 at 100,000 chunks).
        op.execute("CREATE INDEX ix_chunk_vectors_user ON chunk_vectors (user_id, attachment_id)"
                   + (" INCLUDE (chunk_id)" if postgres else ""))

    if postgres:
        # BM25 from term statistics: one row per (chunk, term) with its frequency; document frequencies
        # are index-only counts over (user_id, term).
        op.execute("""CREATE TABLE chunk_terms (
            chunk_id integer NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
            user_id integer NOT NULL,
            term text NOT NULL,
            tf integer NOT NULL,
            PRIMARY KEY (chunk_id, term))""")
        op.execute("CREATE INDEX ix_chunk_terms_user_term ON chunk_terms (user_id, term) INCLUDE (chunk_id, tf)")
    else:
        # Terms are tokenized by Convo (the same function on both backends); FTS5 only splits on spaces.
        op.execute("CREATE VIRTUAL TABLE chunks_fts USING fts5(terms, tokenize = 'unicode61 remove_diacritics 0')")
        op.execute("""CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
            DELETE FROM chunks_fts WHERE rowid = old.id;
            END""")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("DROP TABLE chunk_terms")
    else:
        op.execute("DROP TRIGGER chunks_fts_delete")
        op.execute("DROP TABLE chunks_fts")
    op.execute("DROP TABLE chunk_vectors")
    op.drop_table("chunks")
    op.drop_table("attachments")
