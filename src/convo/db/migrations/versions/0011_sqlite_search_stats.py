"""SQLite: each user's search statistics (documents and tokens), kept by triggers beside the index's

FTS5's `bm25()` counts over every user's documents, so scores told a user how many of other users'
messages hold a word (security review M1). Search now ranks with BM25 over the user's own documents:
document frequencies are counted in the user's rowid range at query time, and the document count and
total length, which FTS5 only keeps for the whole table, are kept here per user and corpus (0: messages
and titles, `search_index`; 1: file chunks, `search_files`), under the same conditions as the index
triggers of 0002 and 0004. PostgreSQL ranks with `ts_rank_cd`, which reads only the document.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from convo.db.search_text import register_sqlite

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHATS, FILES = 0, 1
USER_SHIFT, KIND_SHIFT = 2**37, 2**34
MESSAGE, THREAD, ATTACHMENT = 0, 1, 2
_HEX = "0123456789ABCDEF"
# A first chunk's index text also holds its file's name (0004).
_FILE_BODY = "CASE WHEN {c}.position = 0 THEN a.filename || ' ' ELSE '' END || {c}.text"


def _add(user: str, corpus: int, sign: str, length: str, condition: str = "true") -> str:
    """Add (sign "") or take away (sign "-") one document of `length` tokens; the WHERE also keeps
    SQLite from reading ON CONFLICT as part of the SELECT."""
    return (
        f"INSERT INTO search_stats (user_id, corpus, docs, tokens) "
        f"SELECT {user}, {corpus}, {sign}1, {sign}({length}) WHERE {condition} "
        "ON CONFLICT (user_id, corpus) DO UPDATE SET docs = docs + excluded.docs, tokens = tokens + excluded.tokens;"
    )


def _indexed_length(table: str, rowid: str) -> str:
    """The indexed body's length in tokens, read from FTS5's docsize row (its first varint) in plain
    SQL: deletes must keep working without the app's functions, from an operator's sqlite3 shell.
    Lengths reach three varint bytes at most (a message is at most 200,000 characters)."""

    def byte(i: int) -> str:
        return (f"((instr('{_HEX}', substr(h, {2 * i + 1}, 1)) - 1) * 16 "
                f"+ instr('{_HEX}', substr(h, {2 * i + 2}, 1)) - 1)")

    b0, b1, b2 = byte(0), byte(1), byte(2)
    decode = (f"CASE WHEN {b0} < 128 THEN {b0} WHEN {b1} < 128 THEN ({b0} - 128) * 128 + {b1} "
              f"ELSE (({b0} - 128) * 128 + {b1} - 128) * 128 + {b2} END")
    return f"coalesce((SELECT {decode} FROM (SELECT hex(sz) AS h FROM {table}_docsize WHERE id = {rowid})), 0)"


def _rowid(r: str, kind: int) -> str:
    return f"{r}.user_id * {USER_SHIFT} + {kind * KIND_SHIFT} + {r}.id"


def _file_length(c: str) -> str:
    return f"(SELECT convo_search_length({_FILE_BODY.format(c=c)}) FROM attachments a WHERE a.id = {c}.attachment_id)"


# A message or title is indexed when it is not streaming and not empty (0002's triggers), a file chunk
# always (0004's). Inserts and updates measure the text as the index does (the index's own triggers
# need the app's functions there too); deletes read what the index holds, BEFORE the index's AFTER
# triggers remove it.
_SQLITE = [
    """CREATE TABLE search_stats (
        user_id INTEGER NOT NULL,
        corpus INTEGER NOT NULL,
        docs INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        PRIMARY KEY (user_id, corpus))""",
    f"""CREATE TRIGGER search_stats_message_insert AFTER INSERT ON messages
        WHEN new.status != 'streaming' AND new.content != ''
        BEGIN {_add("new.user_id", CHATS, "", "convo_search_length(new.content)")} END""",
    f"""CREATE TRIGGER search_stats_message_update AFTER UPDATE OF content, status ON messages
        WHEN old.status != 'streaming' OR new.status != 'streaming'
        BEGIN
          {_add("old.user_id", CHATS, "-", "convo_search_length(old.content)",
                "old.status != 'streaming' AND old.content != ''")}
          {_add("new.user_id", CHATS, "", "convo_search_length(new.content)",
                "new.status != 'streaming' AND new.content != ''")}
        END""",
    f"""CREATE TRIGGER search_stats_message_delete BEFORE DELETE ON messages
        WHEN old.status != 'streaming' AND old.content != ''
        BEGIN {_add("old.user_id", CHATS, "-", _indexed_length("search_index", _rowid("old", MESSAGE)))} END""",
    f"""CREATE TRIGGER search_stats_thread_insert AFTER INSERT ON threads
        WHEN new.title != ''
        BEGIN {_add("new.user_id", CHATS, "", "convo_search_length(new.title)")} END""",
    f"""CREATE TRIGGER search_stats_thread_update AFTER UPDATE OF title ON threads
        WHEN old.title IS NOT new.title
        BEGIN
          {_add("old.user_id", CHATS, "-", "convo_search_length(old.title)", "old.title != ''")}
          {_add("new.user_id", CHATS, "", "convo_search_length(new.title)", "new.title != ''")}
        END""",
    f"""CREATE TRIGGER search_stats_thread_delete BEFORE DELETE ON threads
        WHEN old.title != ''
        BEGIN {_add("old.user_id", CHATS, "-", _indexed_length("search_index", _rowid("old", THREAD)))} END""",
    f"""CREATE TRIGGER search_stats_chunk_insert AFTER INSERT ON chunks
        BEGIN {_add("new.user_id", FILES, "", _file_length("new"))} END""",
    f"""CREATE TRIGGER search_stats_chunk_delete BEFORE DELETE ON chunks
        BEGIN {_add("old.user_id", FILES, "-", _indexed_length("search_files", _rowid("old", ATTACHMENT)))} END""",
    f"""INSERT INTO search_stats (user_id, corpus, docs, tokens)
        SELECT user_id, {CHATS}, count(*), sum(length) FROM (
          SELECT user_id, convo_search_length(content) AS length FROM messages
          WHERE status != 'streaming' AND content != ''
          UNION ALL
          SELECT user_id, convo_search_length(title) FROM threads WHERE title != '')
        GROUP BY user_id""",
    f"""INSERT INTO search_stats (user_id, corpus, docs, tokens)
        SELECT c.user_id, {FILES}, count(*), sum(convo_search_length({_FILE_BODY.format(c="c")}))
        FROM chunks c JOIN attachments a ON a.id = c.attachment_id GROUP BY c.user_id""",
]

_TRIGGERS = ("message_insert", "message_update", "message_delete", "thread_insert", "thread_update", "thread_delete",
             "chunk_insert", "chunk_delete")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    # Alembic's connection is not one of the app's: the triggers' and backfill's function is not there yet.
    register_sqlite(bind.connection.dbapi_connection)
    for statement in _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS search_stats_{name}")
    op.execute("DROP TABLE IF EXISTS search_stats")
