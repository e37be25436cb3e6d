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


def _add(user: str, corpus: int, sign: str, body: str, condition: str = "true") -> str:
    """Add (sign "") or take away (sign "-") one document of `body`'s length; the WHERE also keeps
    SQLite from reading ON CONFLICT as part of the SELECT."""
    return (
        f"INSERT INTO search_stats (user_id, corpus, docs, tokens) "
        f"SELECT {user}, {corpus}, {sign}1, {sign}convo_search_length({body}) WHERE {condition} "
        "ON CONFLICT (user_id, corpus) DO UPDATE SET docs = docs + excluded.docs, tokens = tokens + excluded.tokens;"
    )


# A message or title is indexed when it is not streaming and not empty (0002's triggers), a file chunk
# always (0004's). A first chunk's index text also holds the file name, left out of the length here:
# the name is gone by the time its chunks are deleted with their attachment (a few tokens a file).
_SQLITE = [
    """CREATE TABLE search_stats (
        user_id INTEGER NOT NULL,
        corpus INTEGER NOT NULL,
        docs INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        PRIMARY KEY (user_id, corpus))""",
    f"""CREATE TRIGGER search_stats_message_insert AFTER INSERT ON messages
        WHEN new.status != 'streaming' AND new.content != ''
        BEGIN {_add("new.user_id", CHATS, "", "new.content")} END""",
    f"""CREATE TRIGGER search_stats_message_update AFTER UPDATE OF content, status ON messages
        WHEN old.status != 'streaming' OR new.status != 'streaming'
        BEGIN
          {_add("old.user_id", CHATS, "-", "old.content", "old.status != 'streaming' AND old.content != ''")}
          {_add("new.user_id", CHATS, "", "new.content", "new.status != 'streaming' AND new.content != ''")}
        END""",
    f"""CREATE TRIGGER search_stats_message_delete AFTER DELETE ON messages
        WHEN old.status != 'streaming' AND old.content != ''
        BEGIN {_add("old.user_id", CHATS, "-", "old.content")} END""",
    f"""CREATE TRIGGER search_stats_thread_insert AFTER INSERT ON threads
        WHEN new.title != ''
        BEGIN {_add("new.user_id", CHATS, "", "new.title")} END""",
    f"""CREATE TRIGGER search_stats_thread_update AFTER UPDATE OF title ON threads
        WHEN old.title IS NOT new.title
        BEGIN
          {_add("old.user_id", CHATS, "-", "old.title", "old.title != ''")}
          {_add("new.user_id", CHATS, "", "new.title", "new.title != ''")}
        END""",
    f"""CREATE TRIGGER search_stats_thread_delete AFTER DELETE ON threads
        WHEN old.title != ''
        BEGIN {_add("old.user_id", CHATS, "-", "old.title")} END""",
    f"""CREATE TRIGGER search_stats_chunk_insert AFTER INSERT ON chunks
        BEGIN {_add("new.user_id", FILES, "", "new.text")} END""",
    f"""CREATE TRIGGER search_stats_chunk_delete AFTER DELETE ON chunks
        BEGIN {_add("old.user_id", FILES, "-", "old.text")} END""",
    f"""INSERT INTO search_stats (user_id, corpus, docs, tokens)
        SELECT user_id, {CHATS}, count(*), sum(length) FROM (
          SELECT user_id, convo_search_length(content) AS length FROM messages
          WHERE status != 'streaming' AND content != ''
          UNION ALL
          SELECT user_id, convo_search_length(title) FROM threads WHERE title != '')
        GROUP BY user_id""",
    f"""INSERT INTO search_stats (user_id, corpus, docs, tokens)
        SELECT user_id, {FILES}, count(*), sum(convo_search_length(text)) FROM chunks GROUP BY user_id""",
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
