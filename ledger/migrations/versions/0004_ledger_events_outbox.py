"""The ledger's own events (`ledger.events.v1`): an outbox written with the effects.

`ledger_outbox` rows are inserted in the SAME transaction as what they announce:
- a settlement batch inserts ONE row holding the ids of the entries it posted (`entry_ids`);
  the publisher expands it into one `EntryPosted` per entry, read back from the journal
  (deterministic: the journal never changes);
- gaps, stale-epoch events, correction steps and reconciliations insert ready-made,
  serialized `EventEnvelope`s (`envelope`, seq 0) under a unique `event_id`
  (ON CONFLICT DO NOTHING: a retried step adds nothing).
The publisher assigns each row its envelope seqs (`first_seq`, `event_count`: gap-free from
1, one stream, `ledger_event_streams` keeps the last seq) and commits that BEFORE sending,
so a re-send after a crash carries the same seqs; after the broker acknowledged it sets
`published_at`.

What the database enforces (for every role, the owner included, except where said):
- the content of a row (`entry_ids`, `event_id`, `envelope`, `created_at`) never changes;
- seqs are assigned once, and `published_at` is set once (never cleared or moved);
- an unpublished row cannot be deleted; published rows may be deleted (retention), and only
  by the owner: the service's role has SELECT, INSERT and UPDATE of (first_seq, event_count,
  published_at) only — no DELETE, no TRUNCATE.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SERVICE_ROLE = "ledger_service"

SCHEMA = """
CREATE TABLE ledger_outbox (
    outbox_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    entry_ids BIGINT[],
    event_id TEXT UNIQUE,
    envelope BYTEA,
    first_seq BIGINT,
    event_count INTEGER,
    published_at TIMESTAMPTZ,
    CONSTRAINT ledger_outbox_one_kind CHECK (
        (entry_ids IS NOT NULL AND cardinality(entry_ids) > 0
            AND event_id IS NULL AND envelope IS NULL)
        OR (entry_ids IS NULL AND event_id IS NOT NULL AND event_id <> ''
            AND envelope IS NOT NULL)),
    CONSTRAINT ledger_outbox_seqs CHECK (
        (first_seq IS NULL AND event_count IS NULL)
        OR (first_seq >= 1 AND event_count >= 1)),
    CONSTRAINT ledger_outbox_published_after_seq CHECK (
        published_at IS NULL OR first_seq IS NOT NULL)
);
CREATE INDEX ledger_outbox_unpublished ON ledger_outbox (outbox_id) WHERE published_at IS NULL;

CREATE TABLE ledger_event_streams (
    stream TEXT PRIMARY KEY,
    seq_last BIGINT NOT NULL CHECK (seq_last >= 0)
);
INSERT INTO ledger_event_streams (stream, seq_last) VALUES ('ledger', 0);

CREATE FUNCTION ledger_outbox_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER ledger_outbox_guard BEFORE UPDATE OR DELETE ON ledger_outbox
    FOR EACH ROW EXECUTE FUNCTION ledger_outbox_guard();
CREATE TRIGGER ledger_outbox_no_truncate BEFORE TRUNCATE ON ledger_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

CREATE FUNCTION ledger_event_streams_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.stream <> OLD.stream OR NEW.seq_last < OLD.seq_last THEN
        RAISE EXCEPTION 'ledger event seqs only move forward' USING ERRCODE = 'LA001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_event_streams_forward BEFORE UPDATE OR DELETE ON ledger_event_streams
    FOR EACH ROW EXECUTE FUNCTION ledger_event_streams_forward();
CREATE TRIGGER ledger_event_streams_no_truncate BEFORE TRUNCATE ON ledger_event_streams
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
"""


def upgrade() -> None:
    op.execute(SCHEMA)
    op.execute(f"REVOKE ALL ON ledger_outbox, ledger_event_streams FROM {SERVICE_ROLE}")
    op.execute(f"GRANT SELECT, INSERT ON ledger_outbox TO {SERVICE_ROLE}")
    op.execute(
        f"GRANT UPDATE (first_seq, event_count, published_at) ON ledger_outbox TO {SERVICE_ROLE}"
    )
    op.execute(f"GRANT SELECT, UPDATE (seq_last) ON ledger_event_streams TO {SERVICE_ROLE}")
    op.execute(f"GRANT USAGE ON SEQUENCE ledger_outbox_outbox_id_seq TO {SERVICE_ROLE}")


def downgrade() -> None:
    message = "the ledger's outbox is never downgraded by a migration"
    raise RuntimeError(message)
