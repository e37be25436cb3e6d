"""search index: FTS5 on SQLite, tsvector + GIN on PostgreSQL, kept current by triggers

One index holds every searchable document of every kind. A document is a finished message (an answer
is indexed once, when it stops streaming, so the once-a-second checkpoints of a live answer never touch
the index) or a thread title; attachment text joins later as a class of its own with its own triggers.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from convo.db.search_text import CJK_CLASS, FOLD_FROM, FOLD_TO, MULTI_FOLDS, register_sqlite

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every document has a kind: 0 a message, 1 a thread title (attachments will be 2). On SQLite the rowid
# is owner << 37 | kind << 34 | document id, so one user's documents are a contiguous rowid range that
# FTS5 seeks to directly (a query never walks other users' postings), and walking it backwards meets
# titles first, then messages newest first. PostgreSQL keeps owner and kind in columns, and the owner
# also as a lexeme that the GIN index intersects with the words.
USER_SHIFT, KIND_SHIFT = 2**37, 2**34
MESSAGE, THREAD = 0, 1
_MESSAGE_ROWID = f"{{r}}.user_id * {USER_SHIFT} + {{r}}.id"
_THREAD_ROWID = f"{{r}}.user_id * {USER_SHIFT} + {THREAD * KIND_SHIFT} + {{r}}.id"


def _message_rowid(r: str) -> str:
    return _MESSAGE_ROWID.replace("{r}", r)


def _thread_rowid(r: str) -> str:
    return _THREAD_ROWID.replace("{r}", r)


_SQLITE_EPOCH = "((julianday({}) - 2440587.5) * 86400.0)"

_SQLITE = [
    # `tags` holds the thread as a token ('t12'): a thread filter is a short posting list to intersect.
    # Prefixes of 2-4 characters get their own posting lists, so `abcd*` is one lookup instead of a
    # merge of every matching word's list over the whole index (1M messages: prefix p95 25.7 -> 15.2
    # ms; the index grows about 60%).
    """CREATE VIRTUAL TABLE search_index USING fts5(
        body, tags, role UNINDEXED, created_at UNINDEXED,
        tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3 4')""",
    f"""CREATE TRIGGER search_message_insert AFTER INSERT ON messages
        WHEN new.status != 'streaming' AND new.content != ''
        BEGIN
          INSERT INTO search_index(rowid, body, tags, role, created_at)
          VALUES ({_message_rowid("new")}, convo_search_text(new.content),
                  't' || new.thread_id, new.role,
                  {_SQLITE_EPOCH.format("new.created_at")});
        END""",
    f"""CREATE TRIGGER search_message_update AFTER UPDATE OF content, status ON messages
        WHEN old.status != 'streaming' OR new.status != 'streaming'
        BEGIN
          DELETE FROM search_index WHERE rowid = {_message_rowid("old")};
          INSERT INTO search_index(rowid, body, tags, role, created_at)
          SELECT {_message_rowid("new")}, convo_search_text(new.content),
                 't' || new.thread_id, new.role,
                 {_SQLITE_EPOCH.format("new.created_at")}
          WHERE new.status != 'streaming' AND new.content != '';
        END""",
    f"""CREATE TRIGGER search_message_delete AFTER DELETE ON messages
        WHEN old.status != 'streaming'
        BEGIN
          DELETE FROM search_index WHERE rowid = {_message_rowid("old")};
        END""",
    f"""CREATE TRIGGER search_thread_insert AFTER INSERT ON threads
        WHEN new.title != ''
        BEGIN
          INSERT INTO search_index(rowid, body, tags, role, created_at)
          VALUES ({_thread_rowid("new")}, convo_search_text(new.title), 't' || new.id, NULL,
                  {_SQLITE_EPOCH.format("new.updated_at")});
        END""",
    f"""CREATE TRIGGER search_thread_update AFTER UPDATE OF title ON threads
        WHEN old.title IS NOT new.title
        BEGIN
          DELETE FROM search_index WHERE rowid = {_thread_rowid("old")};
          INSERT INTO search_index(rowid, body, tags, role, created_at)
          SELECT {_thread_rowid("new")}, convo_search_text(new.title), 't' || new.id, NULL,
                 {_SQLITE_EPOCH.format("new.updated_at")}
          WHERE new.title != '';
        END""",
    f"""CREATE TRIGGER search_thread_delete AFTER DELETE ON threads
        BEGIN
          DELETE FROM search_index WHERE rowid = {_thread_rowid("old")};
        END""",
]

_SQLITE_BACKFILL = [
    f"""INSERT INTO search_index(rowid, body, tags, role, created_at)
        SELECT {_message_rowid("messages")}, convo_search_text(content), 't' || thread_id, role,
               {_SQLITE_EPOCH.format("created_at")}
        FROM messages WHERE status != 'streaming' AND content != ''""",
    f"""INSERT INTO search_index(rowid, body, tags, role, created_at)
        SELECT {_thread_rowid("threads")}, convo_search_text(title), 't' || id, NULL,
               {_SQLITE_EPOCH.format("updated_at")}
        FROM threads WHERE title != ''""",
]


def _pg_text_function() -> str:
    multi = "t"
    for src, dst in MULTI_FOLDS.items():
        multi = f"replace({multi}, '{src}', '{dst}')"
    return f"""
CREATE FUNCTION convo_search_text(src text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
  t text;
  part text[];
  n int;
  result text := '';
BEGIN
  IF src IS NULL OR src = '' THEN
    RETURN '';
  END IF;
  t := lower(src);
  -- Most text is ASCII: nothing to fold, no CJK to split.
  IF octet_length(t) = char_length(t) THEN
    RETURN t;
  END IF;
  t := translate(t, '{FOLD_FROM}', '{FOLD_TO}');
  t := {multi};
  IF t !~ '[{CJK_CLASS}]' THEN
    RETURN t;
  END IF;
  FOR part IN SELECT regexp_matches(t, '([{CJK_CLASS}]+)|([^{CJK_CLASS}]+)', 'g') LOOP
    IF part[1] IS NULL THEN
      result := result || part[2];
    ELSE
      n := char_length(part[1]);
      result := result || ' ';
      FOR i IN 1 .. n - 1 LOOP
        result := result || substr(part[1], i, 2) || ' ';
      END LOOP;
      result := result || substr(part[1], n, 1) || ' ';
    END IF;
  END LOOP;
  RETURN result;
END
$fn$"""


_PG_MESSAGE_TSV = (
    "to_tsvector('simple', convo_search_text({r}.content))"
    " || array_to_tsvector(ARRAY['@u' || {r}.user_id, '@t' || {r}.thread_id])"
)
_PG_THREAD_TSV = (
    "to_tsvector('simple', convo_search_text({r}.title))"
    " || array_to_tsvector(ARRAY['@u' || {r}.user_id, '@t' || {r}.id])"
)

_PG = [
    # Owner, thread and role ride in the tsvector as lexemes the parser can never produce ('@u42'), so
    # the GIN index intersects them with the words instead of fetching every user's matches.
    """CREATE TABLE search_docs (
        kind smallint NOT NULL,
        doc_id integer NOT NULL,
        user_id integer NOT NULL,
        thread_id integer NOT NULL,
        role varchar(16),
        created_at timestamptz NOT NULL,
        tsv tsvector NOT NULL,
        PRIMARY KEY (doc_id, kind))""",
    _pg_text_function(),
    f"""CREATE FUNCTION convo_search_message_sync() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    DELETE FROM search_docs WHERE kind = {MESSAGE} AND doc_id = OLD.id;
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.status <> 'streaming' AND NEW.content <> '' THEN
    INSERT INTO search_docs (kind, doc_id, user_id, thread_id, role, created_at, tsv)
    VALUES ({MESSAGE}, NEW.id, NEW.user_id, NEW.thread_id, NEW.role, NEW.created_at,
            {_PG_MESSAGE_TSV.format(r="NEW")});
  END IF;
  RETURN NULL;
END
$fn$""",
    f"""CREATE FUNCTION convo_search_thread_sync() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    DELETE FROM search_docs WHERE kind = {THREAD} AND doc_id = OLD.id;
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.title <> '' THEN
    INSERT INTO search_docs (kind, doc_id, user_id, thread_id, role, created_at, tsv)
    VALUES ({THREAD}, NEW.id, NEW.user_id, NEW.id, NULL, NEW.updated_at, {_PG_THREAD_TSV.format(r="NEW")});
  END IF;
  RETURN NULL;
END
$fn$""",
    # The WHEN clauses keep a streaming answer's checkpoints from even calling the function.
    """CREATE TRIGGER search_message_insert AFTER INSERT ON messages FOR EACH ROW
        WHEN (NEW.status <> 'streaming') EXECUTE FUNCTION convo_search_message_sync()""",
    """CREATE TRIGGER search_message_update AFTER UPDATE OF content, status ON messages FOR EACH ROW
        WHEN (OLD.status <> 'streaming' OR NEW.status <> 'streaming')
        EXECUTE FUNCTION convo_search_message_sync()""",
    """CREATE TRIGGER search_message_delete AFTER DELETE ON messages FOR EACH ROW
        WHEN (OLD.status <> 'streaming') EXECUTE FUNCTION convo_search_message_sync()""",
    """CREATE TRIGGER search_thread_insert AFTER INSERT ON threads FOR EACH ROW
        EXECUTE FUNCTION convo_search_thread_sync()""",
    """CREATE TRIGGER search_thread_update AFTER UPDATE OF title ON threads FOR EACH ROW
        WHEN (OLD.title IS DISTINCT FROM NEW.title) EXECUTE FUNCTION convo_search_thread_sync()""",
    """CREATE TRIGGER search_thread_delete AFTER DELETE ON threads FOR EACH ROW
        EXECUTE FUNCTION convo_search_thread_sync()""",
]

_PG_BACKFILL = [
    f"""INSERT INTO search_docs (kind, doc_id, user_id, thread_id, role, created_at, tsv)
        SELECT {MESSAGE}, m.id, m.user_id, m.thread_id, m.role, m.created_at, {_PG_MESSAGE_TSV.format(r="m")}
        FROM messages m WHERE m.status <> 'streaming' AND m.content <> ''""",
    f"""INSERT INTO search_docs (kind, doc_id, user_id, thread_id, role, created_at, tsv)
        SELECT {THREAD}, t.id, t.user_id, t.id, NULL, t.updated_at, {_PG_THREAD_TSV.format(r="t")}
        FROM threads t WHERE t.title <> ''""",
    # Built after the backfill: one sorted build is much faster than a million insertions.
    "CREATE INDEX ix_search_docs_tsv ON search_docs USING gin (tsv)",
]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # Alembic's connection is not one of the app's, so the triggers' function is not there yet.
        register_sqlite(bind.connection.dbapi_connection)
        statements = _SQLITE + _SQLITE_BACKFILL
    else:
        statements = _PG + _PG_BACKFILL
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in (
            "message_insert",
            "message_update",
            "message_delete",
            "thread_insert",
            "thread_update",
            "thread_delete",
        ):
            op.execute(f"DROP TRIGGER IF EXISTS search_{name}")
        op.execute("DROP TABLE IF EXISTS search_index")
        return
    for name, table in (
        ("message_insert", "messages"),
        ("message_update", "messages"),
        ("message_delete", "messages"),
        ("thread_insert", "threads"),
        ("thread_update", "threads"),
        ("thread_delete", "threads"),
    ):
        op.execute(f"DROP TRIGGER IF EXISTS search_{name} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS convo_search_message_sync()")
    op.execute("DROP FUNCTION IF EXISTS convo_search_thread_sync()")
    op.execute("DROP FUNCTION IF EXISTS convo_search_text(text)")
    op.execute("DROP TABLE IF EXISTS search_docs")
