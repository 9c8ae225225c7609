"""The ledger outbox stores a batch's entry ids as ranges (docs/adr/0010).

Settlement takes entry ids in blocks of 256 (migration 0003), so the ~1,500 ids of a batch
are a handful of consecutive runs. A batch row now holds them as an `int8multirange`
(`entry_id_ranges`, e.g. `{[1,257),[513,769)}`) instead of a `bigint[]` of every id: a few
bytes per batch instead of ~12 kB to send, parse, compress and write to WAL.

- New rows use `entry_id_ranges`; rows written before keep `entry_ids` (the publisher reads
  both). A row is exactly one of: ranges (not empty), an id array (not empty), a ready-made
  envelope with its event id.
- The guard keeps every promise of migration 0004 and adds `entry_id_ranges` to the
  immutable content (its body is 0004's restated with that one condition more: a migration
  is frozen history, so it does not import another's text); the service's role keeps its
  privileges (INSERT covers the new column, UPDATE stays limited to first_seq, event_count,
  published_at).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = """
ALTER TABLE ledger_outbox ADD COLUMN entry_id_ranges int8multirange;
ALTER TABLE ledger_outbox DROP CONSTRAINT ledger_outbox_one_kind;
ALTER TABLE ledger_outbox ADD CONSTRAINT ledger_outbox_one_kind CHECK (
    (entry_id_ranges IS NOT NULL AND NOT isempty(entry_id_ranges)
        AND entry_ids IS NULL AND event_id IS NULL AND envelope IS NULL)
    OR (entry_ids IS NOT NULL AND cardinality(entry_ids) > 0 AND entry_id_ranges IS NULL
        AND event_id IS NULL AND envelope IS NULL)
    OR (entry_ids IS NULL AND entry_id_ranges IS NULL AND event_id IS NOT NULL
        AND event_id <> '' AND envelope IS NOT NULL));

CREATE OR REPLACE FUNCTION ledger_outbox_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.published_at IS NULL THEN
            RAISE EXCEPTION 'outbox row % is not published yet', OLD.outbox_id
                USING ERRCODE = 'LA001';
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.outbox_id <> OLD.outbox_id OR NEW.created_at <> OLD.created_at
       OR NEW.entry_ids IS DISTINCT FROM OLD.entry_ids
       OR NEW.entry_id_ranges IS DISTINCT FROM OLD.entry_id_ranges
       OR NEW.event_id IS DISTINCT FROM OLD.event_id
       OR NEW.envelope IS DISTINCT FROM OLD.envelope THEN
        RAISE EXCEPTION 'the content of outbox row % is immutable', OLD.outbox_id
            USING ERRCODE = 'LA001';
    END IF;
    IF OLD.first_seq IS NOT NULL AND (NEW.first_seq IS DISTINCT FROM OLD.first_seq
       OR NEW.event_count IS DISTINCT FROM OLD.event_count) THEN
        RAISE EXCEPTION 'outbox row % has its seqs already', OLD.outbox_id
            USING ERRCODE = 'LA001';
    END IF;
    IF OLD.published_at IS NOT NULL
       AND NEW.published_at IS DISTINCT FROM OLD.published_at THEN
        RAISE EXCEPTION 'outbox row % is published already', OLD.outbox_id
            USING ERRCODE = 'LA001';
    END IF;
    RETURN NEW;
END
$$;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    message = "the ledger's outbox is never downgraded by a migration"
    raise RuntimeError(message)
