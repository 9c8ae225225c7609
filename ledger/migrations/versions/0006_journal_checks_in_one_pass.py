"""The journal's database checks in fewer passes (settlement throughput, docs/adr/0010).

Measured before this revision (`bench/ledger_bench.py --mix core`, COPY ceiling): the
checks cost ~4.4 of ~11 us per posting. Two changes, same guarantees, same errors:

1. The postings statement trigger read its transition table four times (entries exist,
   accounts exist, legs complete, balanced per asset). Now twice: once grouped by entry and
   joined to `journal_entries` (the entry exists; its legs are exactly 0 .. leg_count - 1),
   once joined to `accounts` and grouped by entry and asset (the account exists; the entry
   balances in every asset). Same SQLSTATEs (23503, LA002) and messages as before.
2. Completeness ("an entry is committed with all its postings") no longer counts each
   entry's postings at commit (one index scan per entry). The postings check in 1 already
   proves, per statement, that every entry it names got ALL its legs in that statement
   (and the primary key forbids a leg twice, so no later statement can add one). So at
   commit it is enough that every entry inserted in the transaction was named by some
   postings statement. Both triggers record their statement's entry ids as ONE
   `int8multirange` row of `entry_completeness_checks` (`covered` false for entries, true
   for postings; contiguous ids make one range, so the row stays a few bytes); the deferred
   check of an entries row subtracts the covered ranges of the transaction from it and
   reports the lowest id left. The rows of a transaction are removed by its last check.

`entry_completeness_checks` is UNLOGGED: its rows never outlive their transaction (empty
between transactions), so crash recovery emptying it is exactly right, and they cost no WAL.
Both trigger functions are SECURITY DEFINER; the service's role still has no privilege on
the table, so it can neither forge a covered row nor remove a pending check.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CHECKS = """
DROP TRIGGER journal_entries_queue_completeness_check ON journal_entries;
DROP TABLE entry_completeness_checks;
DROP FUNCTION ledger_queue_completeness_check();
DROP FUNCTION ledger_check_entries_have_postings();

CREATE UNLOGGED TABLE entry_completeness_checks (
    check_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_ids INT8MULTIRANGE NOT NULL,
    covered BOOLEAN NOT NULL
);
REVOKE ALL ON entry_completeness_checks FROM PUBLIC;

CREATE FUNCTION ledger_queue_completeness_check() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO entry_completeness_checks (entry_ids, covered)
    SELECT range_agg(int8range(entry_id, entry_id, '[]')), false
    FROM new_entries HAVING count(*) > 0;
    RETURN NULL;
END
$$;
CREATE TRIGGER journal_entries_queue_completeness_check AFTER INSERT ON journal_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_queue_completeness_check();

CREATE FUNCTION ledger_check_entries_have_postings() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    missing BIGINT;
    legs SMALLINT;
BEGIN
    SELECT lower(NEW.entry_ids - coalesce(range_agg(covered_ids), '{}'::int8multirange))
    INTO missing
    FROM entry_completeness_checks AS c, unnest(c.entry_ids) AS covered_ids
    WHERE c.covered;
    IF missing IS NOT NULL THEN
        SELECT leg_count INTO legs FROM journal_entries WHERE entry_id = missing;
        RAISE EXCEPTION 'entry % was committed without its % postings', missing, legs
            USING ERRCODE = 'LA002';
    END IF;
    DELETE FROM entry_completeness_checks WHERE check_id = NEW.check_id;
    IF NOT EXISTS (SELECT FROM entry_completeness_checks WHERE NOT covered) THEN
        DELETE FROM entry_completeness_checks WHERE covered;
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER entry_completeness_checks_run AFTER INSERT
    ON entry_completeness_checks DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NOT NEW.covered) EXECUTE FUNCTION ledger_check_entries_have_postings();

CREATE OR REPLACE FUNCTION ledger_check_new_postings() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    by_entry RECORD;
    broken RECORD;
BEGIN
    SELECT range_agg(int8range(n.entry_id, n.entry_id, '[]')) AS entry_ids,
           min(n.entry_id) FILTER (WHERE e.entry_id IS NULL) AS missing,
           min(n.entry_id) FILTER (
               WHERE n.legs <> e.leg_count OR n.first_leg <> 0
                  OR n.last_leg <> e.leg_count - 1) AS incomplete
    INTO by_entry
    FROM (SELECT entry_id, count(*) AS legs, min(leg) AS first_leg, max(leg) AS last_leg
          FROM new_postings GROUP BY entry_id) AS n
    LEFT JOIN journal_entries AS e USING (entry_id);
    IF by_entry.missing IS NOT NULL THEN
        RAISE EXCEPTION 'postings refer to entry %, which does not exist', by_entry.missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT min(p.account_id) AS account_id, p.entry_id, a.asset, sum(p.amount) AS total
    INTO broken
    FROM new_postings AS p LEFT JOIN accounts AS a USING (account_id)
    GROUP BY p.entry_id, a.asset
    HAVING a.asset IS NULL OR sum(p.amount) <> 0
    ORDER BY a.asset IS NOT NULL
    LIMIT 1;
    IF FOUND AND broken.asset IS NULL THEN
        RAISE EXCEPTION 'postings refer to account %, which does not exist', broken.account_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF by_entry.incomplete IS NOT NULL THEN
        RAISE EXCEPTION 'entry % must get all its legs in one statement', by_entry.incomplete
            USING ERRCODE = 'LA002';
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'entry % does not balance in %: %', broken.entry_id, broken.asset,
            broken.total USING ERRCODE = 'LA002';
    END IF;
    IF by_entry.entry_ids IS NOT NULL THEN
        INSERT INTO entry_completeness_checks (entry_ids, covered)
        VALUES (by_entry.entry_ids, true);
    END IF;
    RETURN NULL;
END
$$;
"""


def upgrade() -> None:
    op.execute(CHECKS)


def downgrade() -> None:
    message = "the ledger's journal is never downgraded by a migration"
    raise RuntimeError(message)
