"""cancel requests recorded on the answer

With several API processes the one that receives a cancel is often not the one running the answer: the
request is written here, a Redis message wakes the runner, and the runner polls this column in case the
message was lost.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE, not a batch copy: SQLite's search triggers name this table.
    op.add_column("messages", sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "cancel_requested_at")
