"""search: attachment text; on PostgreSQL, owner-prefixed lexemes and month lexemes

Each chunk of an uploaded file becomes a search document. A chunk is the unit because it is what a hit can show: a snippet from the right page of a long file,
and a tsvector far below PostgreSQL's 1 MB limit. The first chunk also carries the file's name, so
"invoice.pdf" finds the file. Chunks are written once (ingestion) and deleted with their attachment,
so insert and delete triggers keep the index current.

SQLite: a second FTS5 table, `search_files`, with the same tokenizer and rowid layout as `search_index`
(owner << 37 | kind 2 << 34 | chunk id). A table of its own keeps BM25's document frequencies per
corpus (a long PDF does not make a word rare in chat) and keeps a file's hundreds of chunks from
crowding messages out of the newest candidates of `search_index`.
PostgreSQL: rows of kind 2 in `search_docs`; and every document's lexemes now carry their owner, and
each document its month (see below), which rewrites the table once.

Revision ID: 0004
Revises: 0002, 0003
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

from convo.db.search_text import register_sqlite

revision: str = "0004"
down_revision: tuple[str, ...] = ("0002", "0003")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USER_SHIFT, KIND_SHIFT = 2**37, 2**34
MESSAGE, THREAD, ATTACHMENT = 0, 1, 2

_SQLITE_EPOCH = "((julianday(a.created_at) - 2440587.5) * 86400.0)"
# The name goes in front of the first chunk only: once per file is enough to find it, and repeating it
# in every chunk would inflate the name's term frequency.
_BODY = "CASE WHEN {c}.position = 0 THEN a.filename || ' ' ELSE '' END || {c}.text"
# PostgreSQL's parser keeps "q3-report.pdf" as one file-name token, so there the name is also given with
# its punctuation as spaces: "q3-report.pdf" and "report" both find it. (FTS5 splits it by itself.)
_PG_BODY = (
    "CASE WHEN {c}.position = 0 THEN a.filename || ' ' || regexp_replace(a.filename, '[^[:alnum:]]+', ' ', 'g')"
    " || ' ' ELSE '' END || {c}.text"
)

_SQLITE_SELECT = (
    f"SELECT {{c}}.user_id * {USER_SHIFT} + {ATTACHMENT * KIND_SHIFT} + {{c}}.id, "
    f"convo_search_text({_BODY}), 't' || a.thread_id, {_SQLITE_EPOCH} "
)

_SQLITE = [
    """CREATE VIRTUAL TABLE search_files USING fts5(
        body, tags, created_at UNINDEXED,
        tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3 4')""",
    f"""CREATE TRIGGER search_chunk_insert AFTER INSERT ON chunks BEGIN
          INSERT INTO search_files(rowid, body, tags, created_at)
          {_SQLITE_SELECT.format(c="new")} FROM attachments a WHERE a.id = new.attachment_id;
        END""",
    f"""CREATE TRIGGER search_chunk_delete AFTER DELETE ON chunks BEGIN
          DELETE FROM search_files WHERE rowid = old.user_id * {USER_SHIFT} + {ATTACHMENT * KIND_SHIFT} + old.id;
        END""",
    f"""INSERT INTO search_files(rowid, body, tags, created_at)
        {_SQLITE_SELECT.format(c="c")} FROM chunks c JOIN attachments a ON a.id = c.attachment_id""",
]

# PostgreSQL: every lexeme carries its owner ("42:export"), so a user's words are GIN keys of their own
# and a query walks only that user's posting lists; with the owner as one more ANDed lexeme (0002) a
# common word walked every user's postings (1M messages: 12.5 -> 1.5 ms for the GIN scan of a word in
# one document in ten). The thread tag is owned the same way ("42:@t7"; the parser never emits "@"),
# and so is the month a document was written in ("42:@m202611"): a query reads a user's matches newest
# first a few months at a time, each window one more ANDed lexeme for the GIN index (domain/search.py).
# Titles carry "42:@title", so they can be taken first, as SQLite's rowid order does.
# Both functions rewrite the quoted lexemes of the text form, in which a quote inside a lexeme is doubled.
_PG_OWNED = [
    r"""CREATE FUNCTION convo_owned_tsv(owner integer, v tsvector) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT regexp_replace(v::text, '''((?:[^'']|'''')*)''', '''' || owner || ':\1''', 'g')::tsvector
$fn$""",
    r"""CREATE FUNCTION convo_owned_tsquery(owner integer, q tsquery) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT regexp_replace(q::text, '''((?:[^'']|'''')*)''', '''' || owner || ':\1''', 'g')::tsquery
$fn$""",
]


def _month(moment: str) -> str:
    return f"'@m' || to_char({moment} AT TIME ZONE 'UTC', 'YYYYMM')"


def _pg_tsv(owner: str, body: str, thread: str, created: str, title: bool = False) -> str:
    tags = ["'@t' || " + thread, _month(created), *(["'@title'"] if title else [])]
    return (
        f"convo_owned_tsv({owner}, to_tsvector('simple', convo_search_text({body}))"
        f" || array_to_tsvector(ARRAY[{', '.join(tags)}]))"
    )


_PG_SYNC = [
    f"""CREATE OR REPLACE FUNCTION convo_search_message_sync() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    DELETE FROM search_docs WHERE kind = {MESSAGE} AND doc_id = OLD.id;
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.status <> 'streaming' AND NEW.content <> '' THEN
    INSERT INTO search_docs (kind, doc_id, user_id, thread_id, role, created_at, tsv)
    VALUES ({MESSAGE}, NEW.id, NEW.user_id, NEW.thread_id, NEW.role, NEW.created_at,
            {_pg_tsv("NEW.user_id", "NEW.content", "NEW.thread_id", "NEW.created_at")});
  END IF;
  RETURN NULL;
END
$fn$""",
    f"""CREATE OR REPLACE FUNCTION convo_search_thread_sync() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    DELETE FROM search_docs WHERE kind = {THREAD} AND doc_id = OLD.id;
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.title <> '' THEN
    INSERT INTO search_docs (kind, doc_id, user_id, thread_id, role, created_at, tsv)
    VALUES ({THREAD}, NEW.id, NEW.user_id, NEW.id, NULL, NEW.updated_at,
            {_pg_tsv("NEW.user_id", "NEW.title", "NEW.id", "NEW.updated_at", title=True)});
  END IF;
  RETURN NULL;
END
$fn$""",
    f"""CREATE FUNCTION convo_search_chunk_sync() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'DELETE' THEN
    DELETE FROM search_docs WHERE kind = {ATTACHMENT} AND doc_id = OLD.id;
  ELSE
    INSERT INTO search_docs (kind, doc_id, user_id, thread_id, role, created_at, tsv)
    SELECT {ATTACHMENT}, NEW.id, NEW.user_id, a.thread_id, NULL, a.created_at,
           {_pg_tsv("NEW.user_id", _PG_BODY.format(c="NEW"), "a.thread_id", "a.created_at")}
    FROM attachments a WHERE a.id = NEW.attachment_id;
  END IF;
  RETURN NULL;
END
$fn$""",
    """CREATE TRIGGER search_chunk_insert AFTER INSERT ON chunks FOR EACH ROW
        EXECUTE FUNCTION convo_search_chunk_sync()""",
    """CREATE TRIGGER search_chunk_delete AFTER DELETE ON chunks FOR EACH ROW
        EXECUTE FUNCTION convo_search_chunk_sync()""",
]

# The documents are rewritten into a new table rather than updated in place: no dead half to vacuum,
# and the indexes are built once, sorted, after the rows are in.
_PG_REBUILD = [
    """CREATE TABLE search_docs_new (
        kind smallint NOT NULL,
        doc_id integer NOT NULL,
        user_id integer NOT NULL,
        thread_id integer NOT NULL,
        role varchar(16),
        created_at timestamptz NOT NULL,
        tsv tsvector NOT NULL)""",
    f"""INSERT INTO search_docs_new
        SELECT kind, doc_id, user_id, thread_id, role, created_at,
               convo_owned_tsv(user_id, ts_delete(tsv, '@u' || user_id) || array_to_tsvector(
                   CASE WHEN kind = {THREAD} THEN ARRAY[{_month("created_at")}, '@title']
                        ELSE ARRAY[{_month("created_at")}] END))
        FROM search_docs""",
    f"""INSERT INTO search_docs_new
        SELECT {ATTACHMENT}, c.id, c.user_id, a.thread_id, NULL, a.created_at,
               {_pg_tsv("c.user_id", _PG_BODY.format(c="c"), "a.thread_id", "a.created_at")}
        FROM chunks c JOIN attachments a ON a.id = c.attachment_id""",
    "DROP TABLE search_docs",
    "ALTER TABLE search_docs_new RENAME TO search_docs",
    "ALTER TABLE search_docs ADD PRIMARY KEY (doc_id, kind)",
    "CREATE INDEX ix_search_docs_tsv ON search_docs USING gin (tsv)",
]


def _migration_0002() -> ModuleType:
    """0002's module, whose index a downgrade rebuilds (migration files are not importable by name)."""
    path = Path(__file__).with_name("0002_search_index.py")
    spec = importlib.util.spec_from_file_location("convo_migration_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        register_sqlite(bind.connection.dbapi_connection)
        statements = _SQLITE
    else:
        statements = _PG_OWNED + _PG_SYNC + _PG_REBUILD
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS search_chunk_insert")
        op.execute("DROP TRIGGER IF EXISTS search_chunk_delete")
        op.execute("DROP TABLE IF EXISTS search_files")
        return
    op.execute("DROP TRIGGER IF EXISTS search_chunk_insert ON chunks")
    op.execute("DROP TRIGGER IF EXISTS search_chunk_delete ON chunks")
    op.execute("DROP FUNCTION IF EXISTS convo_search_chunk_sync()")
    # 0002's index, as 0002 builds it from the messages and threads.
    previous = _migration_0002()
    previous.downgrade()
    previous.upgrade()
    op.execute("DROP FUNCTION IF EXISTS convo_owned_tsquery(integer, tsquery)")
    op.execute("DROP FUNCTION IF EXISTS convo_owned_tsv(integer, tsvector)")
