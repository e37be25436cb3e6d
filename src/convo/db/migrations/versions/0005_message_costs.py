"""message costs as columns: what an answer cost, and what a running one has reserved

Daily budgets sum them over a user's day (the existing index on messages (user_id, created_at) serves
that); `meta.cost_usd` stays as the API shows it.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on SQLite too: a batch-mode copy of `messages` would drop the search triggers.
    op.add_column("messages", sa.Column("cost_usd", sa.Float(), nullable=True))
    op.add_column("messages", sa.Column("reserved_usd", sa.Float(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        op.execute("UPDATE messages SET cost_usd = json_extract(meta, '$.cost_usd') "
                   "WHERE role = 'assistant' AND json_extract(meta, '$.cost_usd') IS NOT NULL")
    else:
        op.execute("UPDATE messages SET cost_usd = (meta->>'cost_usd')::float "
                   "WHERE role = 'assistant' AND meta ? 'cost_usd'")


def downgrade() -> None:
    op.drop_column("messages", "reserved_usd")
    op.drop_column("messages", "cost_usd")
