"""Postings' references checked once per statement instead of per row (settlement throughput).

The foreign keys postings -> journal_entries and postings -> accounts cost two row-level RI
checks per posting, each locking the referenced row FOR KEY SHARE (a tuple write per entry):
more than half of settlement's time (docs/adr/0010). Both referenced tables are append-only
(triggers refuse UPDATE, DELETE and TRUNCATE for every role), so what the keys still guard is
that a posting names an existing entry and an existing account. The statement trigger that
already checks every new posting set-wise now checks that too, with the same SQLSTATE as a
foreign key (23503), before its leg and balance checks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHECK_NEW_POSTINGS = """
CREATE OR REPLACE FUNCTION ledger_check_new_postings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    broken RECORD;
BEGIN
    SELECT n.entry_id INTO broken
    FROM (SELECT DISTINCT entry_id FROM new_postings) AS n
    WHERE NOT EXISTS (SELECT FROM journal_entries AS e WHERE e.entry_id = n.entry_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'postings refer to entry %, which does not exist', broken.entry_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT n.account_id INTO broken
    FROM (SELECT DISTINCT account_id FROM new_postings) AS n
    WHERE NOT EXISTS (SELECT FROM accounts AS a WHERE a.account_id = n.account_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'postings refer to account %, which does not exist', broken.account_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT n.entry_id INTO broken
    FROM (SELECT entry_id, count(*) AS legs, min(leg) AS first_leg, max(leg) AS last_leg
          FROM new_postings GROUP BY entry_id) AS n
    JOIN journal_entries AS e USING (entry_id)
    WHERE n.legs <> e.leg_count OR n.first_leg <> 0 OR n.last_leg <> e.leg_count - 1
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'entry % must get all its legs in one statement', broken.entry_id
            USING ERRCODE = 'LA002';
    END IF;
    SELECT p.entry_id, a.asset, sum(p.amount) AS total INTO broken
    FROM new_postings AS p JOIN accounts AS a USING (account_id)
    GROUP BY p.entry_id, a.asset HAVING sum(p.amount) <> 0
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'entry % does not balance in %: %', broken.entry_id, broken.asset,
            broken.total USING ERRCODE = 'LA002';
    END IF;
    RETURN NULL;
END
$$;
"""


def upgrade() -> None:
    op.execute(CHECK_NEW_POSTINGS)
    op.execute("ALTER TABLE postings DROP CONSTRAINT postings_entry_id_fkey")
    op.execute("ALTER TABLE postings DROP CONSTRAINT postings_account_id_fkey")


def downgrade() -> None:
    message = "the ledger's journal is never downgraded by a migration"
    raise RuntimeError(message)
