"""ingestion attempts and the spending ledger

`attachments.attempts` counts how often indexing a file was started, so a file that kills its worker is
failed after a bounded number of tries instead of being queued again at every start. `spend` records what
each finished answer cost, by user and UTC day: budgets read it, and deleting or importing chats never
touches it.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE, not a batch copy: SQLite's search triggers name this table.
    op.add_column("attachments", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "spend",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        # No foreign key: the entry outlives the message it paid for.
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_spend_user_day", "spend", ["user_id", "day"])
    # What was spent before the ledger existed: finished answers' costs, on the day they were written.
    # (SQLite keeps UTC text, PostgreSQL a timestamptz; both give the UTC day.)
    day = "date(created_at)" if op.get_bind().dialect.name == "sqlite" else "(created_at AT TIME ZONE 'UTC')::date"
    op.execute(
        f"INSERT INTO spend (user_id, day, message_id, model, cost_usd, created_at) "
        f"SELECT user_id, {day}, id, model, cost_usd, created_at FROM messages "
        f"WHERE cost_usd > 0 AND role = 'assistant' AND status <> 'streaming'"
    )


def downgrade() -> None:
    op.drop_table("spend")
    op.drop_column("attachments", "attempts")
