"""When the ledger last advanced a shard's position (`shard_positions.advanced_at`).

Reconciliation reports how far the ledger lags the core and calls it LAGGING when the
ledger has not advanced for longer than a bound while the core has events it has not
posted (ledger/reconciliation.py). Settlement sets `advanced_at = now()` (the posting
transaction's start) whenever it moves `engine_seq_last`. The column is not indexed, so
the position's update stays a HOT update (0003).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE shard_positions ADD COLUMN advanced_at TIMESTAMPTZ NOT NULL DEFAULT now()"
    )


def downgrade() -> None:
    message = "the ledger's journal is never downgraded by a migration"
    raise RuntimeError(message)
