"""Entries found by reference through indexes; a source event id indexed for trades only.

`ListEntries(reference=...)` matches an entry's reference, source event id or transfer id.
The reference is indexed only behind its kind (`UNIQUE (kind, reference)`), so the OR of the
three could not use an index at all: every lookup read the whole journal, and the index on
`source_event_id` (one insert per entry) served no query. Now:
- the reference is looked up per kind (`kind = ANY(every kind)`: one probe of the unique
  index per kind);
- only a trade's source event id differs from its reference (the trade's is
  `<shard>:<trade id>`; every other entry's is its event id, or '' for corrections), so
  `source_event_id` is indexed for trades only: an index insert for about one entry in six
  on the core's event mix instead of every entry (docs/adr/0010, settlement throughput).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ENTRY_KIND_TRADE = 3  # exchange.ledger.types.v1.ENTRY_KIND_TRADE


def upgrade() -> None:
    op.execute("DROP INDEX journal_entries_source_event_id_idx")
    op.execute(
        "CREATE INDEX journal_entries_trade_source_event_id_idx ON journal_entries "
        f"(source_event_id) WHERE kind = {ENTRY_KIND_TRADE}"
    )


def downgrade() -> None:
    message = "the ledger's journal is never downgraded by a migration"
    raise RuntimeError(message)
