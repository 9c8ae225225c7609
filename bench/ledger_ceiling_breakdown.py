"""What the COPY ceiling's time per posting is made of: checks, each index, the heap.

    .venv/bin/python bench/ledger_ceiling_breakdown.py [--commands 40000] [--repeats 2]

The ceiling of bench/ledger_bench.py (the same entry and posting rows COPYed into the
ledger's tables, one transaction per batch of 2,000 events) on the core mix (the real
engine's events for `--commands` commands of engine_bench's mix), into one fresh database
per variant, each variant taking one more part away: as migrated; the journal's checks off
(its user triggers disabled); then the postings' account index, the postings' primary key,
the trades' source-event-id index, the entries' (kind, reference) key; then bare heaps. The
variants run in turn within each repeat (so all see the same momentary load), and the
best repeat of each is printed with what the part it removed cost per posting. Variants
are measurement only: the journal's rules hold in the first one, the one production runs.
"""

from __future__ import annotations

import argparse

import psycopg

from bench.ledger_bench import CopyCeiling, core_workload
from infra.local.postgres import PostgresCluster
from ledger.db.migrate import upgrade
from ledger.gc_tuning import tune_garbage_collector

CHECKS_OFF = (
    "ALTER TABLE journal_entries DISABLE TRIGGER USER",
    "ALTER TABLE postings DISABLE TRIGGER USER",
)
# (label, the statements that take the part away), cumulative in this order.
STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("as migrated (production)", ()),
    ("- the journal's checks (triggers)", CHECKS_OFF),
    ("- postings' account index", ("DROP INDEX postings_account_id_idx",)),
    ("- postings' primary key", ("ALTER TABLE postings DROP CONSTRAINT postings_pkey",)),
    ("- trades' source-event-id index", ("DROP INDEX journal_entries_trade_source_event_id_idx",)),
    (
        "- entries' (kind, reference) key",
        ("ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_kind_reference_key",),
    ),
    (
        "- entries' other indexes (bare heaps)",
        (
            "DROP INDEX journal_entries_transfer_id_idx",
            "DROP INDEX journal_entries_reverses_entry_id_key",
            "ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_reverses_entry_id_fkey",
            "ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_pkey CASCADE",
        ),
    ),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=40_000)
    parser.add_argument("--batch-events", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=2)
    arguments = parser.parse_args()
    work, _ = core_workload(arguments.commands, arguments.batch_events)
    tune_garbage_collector()
    print(f"workload: {work.postings:,} postings, {len(work.batches)} batches (core mix)")
    best = [0.0] * len(STEPS)
    with PostgresCluster(durable=True) as cluster:
        for repeat in range(arguments.repeats):
            for index in range(len(STEPS)):
                name = f"breakdown_{repeat}_{index}"
                upgrade(cluster.create_database(name).url())
                with psycopg.connect(cluster.conninfo(name), autocommit=True) as connection:
                    for _label, statements in STEPS[: index + 1]:
                        for statement in statements:
                            connection.execute(statement)
                ceiling = CopyCeiling(cluster.conninfo(name), work)
                try:
                    seconds = sum(ceiling.copy_batch(b) for b in range(len(work.batches)))
                finally:
                    ceiling.close()
                best[index] = max(best[index], work.postings / seconds)
                cluster.drop_database(name)
    previous = None
    for (label, _statements), rate in zip(STEPS, best, strict=True):
        micros = 1e6 / rate
        part = "" if previous is None else f"   that part: {previous - micros:5.2f} us"
        print(f"{label:<40} {rate:>9,.0f} postings/s  {micros:5.2f} us/posting{part}")
        previous = micros


if __name__ == "__main__":
    main()
