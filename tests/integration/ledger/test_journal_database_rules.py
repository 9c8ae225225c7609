"""The database itself keeps the journal append-only and every entry balanced.

Two layers: triggers refuse UPDATE, DELETE and TRUNCATE for every role (the migrating
superuser included), and the service's role has no such privilege at all.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from ledger.settlement import Settlement
from ledger.testing import EventStream
from tests.integration.ledger.ledger_support import LedgerDatabase

CHANGES = [
    "UPDATE journal_entries SET memo = 'x'",
    "DELETE FROM journal_entries",
    "TRUNCATE journal_entries CASCADE",
    "UPDATE postings SET amount = amount + 1",
    "DELETE FROM postings",
    "TRUNCATE postings",
    "UPDATE accounts SET owner_id = 'mallory'",
    "DELETE FROM accounts WHERE account_id > 0",
]


@pytest.fixture
async def posted(settlement: Settlement) -> None:
    stream = EventStream()
    await settlement.post(
        [stream.deposit("alice", "USDT", 1_000), stream.reserve("alice", "USDT", 400)]
    )


@pytest.mark.usefixtures("posted")
@pytest.mark.parametrize("statement", CHANGES)
def test_the_owner_is_refused_by_the_triggers(
    ledger_database: LedgerDatabase, statement: str
) -> None:
    with (
        ledger_database.owner_connection() as connection,
        pytest.raises(psycopg.Error, match="append-only"),
    ):
        connection.execute(statement)
    assert ledger_database.count("postings") == 4


@pytest.mark.usefixtures("posted")
@pytest.mark.parametrize("statement", CHANGES)
def test_the_service_role_has_no_such_privilege(
    ledger_database: LedgerDatabase, statement: str
) -> None:
    with (
        ledger_database.service_connection() as connection,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        connection.execute(statement)


def _new_entry(connection: psycopg.Connection[tuple[object, ...]], legs: int) -> int:
    row = connection.execute(
        "INSERT INTO journal_entries (kind, reference, leg_count) VALUES (8, 'manual', %s) "
        "RETURNING entry_id",
        (legs,),
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def _accounts(connection: psycopg.Connection[tuple[object, ...]]) -> tuple[int, int, int]:
    rows = connection.execute(
        "INSERT INTO accounts (owner_id, asset, kind) VALUES ('a', 'USDT', 1), ('b', 'USDT', 1), "
        "('a', 'BTC', 1) RETURNING account_id"
    ).fetchall()
    first, second, third = (int(str(row[0])) for row in rows)
    return first, second, third


def test_an_unbalanced_entry_is_refused(ledger_database: LedgerDatabase) -> None:
    with ledger_database.service_connection() as connection:
        usdt_a, usdt_b, btc_a = _accounts(connection)
        entry = _new_entry(connection, 2)
        with pytest.raises(psycopg.Error, match="does not balance in USDT"):
            connection.execute(
                "INSERT INTO postings (entry_id, leg, account_id, amount) VALUES "
                "(%s, 0, %s, 5), (%s, 1, %s, -4)",
                (entry, usdt_a, entry, usdt_b),
            )
        connection.rollback()
        # Balanced in total but across two assets: still refused.
        usdt_a, usdt_b, btc_a = _accounts(connection)
        entry = _new_entry(connection, 2)
        with pytest.raises(psycopg.Error, match="does not balance"):
            connection.execute(
                "INSERT INTO postings (entry_id, leg, account_id, amount) VALUES "
                "(%s, 0, %s, 5), (%s, 1, %s, -5)",
                (entry, usdt_a, entry, btc_a),
            )


def test_an_entry_without_its_postings_cannot_commit(ledger_database: LedgerDatabase) -> None:
    with ledger_database.service_connection() as connection:
        _new_entry(connection, 2)
        with pytest.raises(psycopg.Error, match="without its 2 postings"):
            connection.commit()


def test_legs_cannot_be_added_to_an_entry_later(ledger_database: LedgerDatabase) -> None:
    with ledger_database.service_connection() as connection:
        usdt_a, usdt_b, _ = _accounts(connection)
        entry = _new_entry(connection, 2)
        connection.execute(
            "INSERT INTO postings (entry_id, leg, account_id, amount) VALUES "
            "(%s, 0, %s, 5), (%s, 1, %s, -5)",
            (entry, usdt_a, entry, usdt_b),
        )
        connection.commit()
        with pytest.raises(psycopg.Error, match="all its legs in one statement"):
            connection.execute(
                "INSERT INTO postings (entry_id, leg, account_id, amount) VALUES "
                "(%s, 2, %s, 7), (%s, 3, %s, -7)",
                (entry, usdt_a, entry, usdt_b),
            )


def test_postings_must_name_an_existing_entry_and_account(ledger_database: LedgerDatabase) -> None:
    with ledger_database.service_connection() as connection:
        usdt_a, usdt_b, _ = _accounts(connection)
        entry = _new_entry(connection, 2)
        with pytest.raises(errors.ForeignKeyViolation, match="entry 999999"):
            connection.execute(
                "INSERT INTO postings (entry_id, leg, account_id, amount) VALUES "
                "(999999, 0, %s, 5), (999999, 1, %s, -5)",
                (usdt_a, usdt_b),
            )
        connection.rollback()
        usdt_a, usdt_b, _ = _accounts(connection)
        entry = _new_entry(connection, 2)
        with pytest.raises(errors.ForeignKeyViolation, match="account 999999"):
            connection.execute(
                "INSERT INTO postings (entry_id, leg, account_id, amount) VALUES "
                "(%s, 0, %s, 5), (%s, 1, 999999, -5)",
                (entry, usdt_a, entry),
            )


def _entries(
    connection: psycopg.Connection[tuple[object, ...]], count: int, prefix: str = "batch"
) -> list[int]:
    rows = connection.execute(
        "INSERT INTO journal_entries (kind, reference, leg_count) "
        "SELECT 8, %s || '-' || n, 2 FROM generate_series(1, %s) AS n RETURNING entry_id",
        (prefix, count),
    ).fetchall()
    return [int(str(row[0])) for row in rows]


def _copy_postings(connection: psycopg.Connection[tuple[object, ...]], rows: str) -> None:
    with connection.cursor().copy(
        "COPY postings (entry_id, leg, account_id, amount) FROM STDIN"
    ) as copy:
        copy.write(rows)


def _two_legs(entries: list[int], credited: int, debited: int, short_entry: int = 0) -> str:
    """COPY rows: +5 / -5 per entry (-4 for `short_entry`: unbalanced)."""
    return "".join(
        f"{entry}\t0\t{credited}\t5\n{entry}\t1\t{debited}\t{-4 if entry == short_entry else -5}\n"
        for entry in entries
    )


def test_completeness_is_checked_per_statement_for_every_entry_of_a_batch(
    ledger_database: LedgerDatabase,
) -> None:
    """One INSERT of 50 entries queues ONE deferred check; it still finds the one entry of
    the 50 whose postings never arrived, and the commit is refused."""
    with ledger_database.service_connection() as connection:
        usdt_a, usdt_b, _ = _accounts(connection)
        entries = _entries(connection, 50)
        _copy_postings(connection, _two_legs(entries[:-1], usdt_a, usdt_b))
        with pytest.raises(psycopg.Error, match=f"entry {entries[-1]} was committed without"):
            connection.commit()
    assert ledger_database.count("journal_entries") == 0
    assert ledger_database.count("entry_completeness_checks") == 0


def test_a_complete_batch_commits_and_leaves_no_pending_check(
    ledger_database: LedgerDatabase,
) -> None:
    with ledger_database.service_connection() as connection:
        usdt_a, usdt_b, _ = _accounts(connection)
        entries = _entries(connection, 50)
        _copy_postings(connection, _two_legs(entries, usdt_a, usdt_b))
        connection.commit()
    assert ledger_database.count("postings") == 100
    assert ledger_database.count("entry_completeness_checks") == 0


def test_an_unbalanced_entry_in_a_copied_batch_refuses_the_whole_statement(
    ledger_database: LedgerDatabase,
) -> None:
    with ledger_database.service_connection() as connection:
        usdt_a, usdt_b, _ = _accounts(connection)
        entries = _entries(connection, 20)
        rows = _two_legs(entries, usdt_a, usdt_b, short_entry=entries[7])
        with pytest.raises(psycopg.Error, match=f"entry {entries[7]} does not balance in USDT"):
            _copy_postings(connection, rows)
    assert ledger_database.count("postings") == 0


def test_entries_and_postings_in_several_statements_commit_and_leave_no_rows(
    ledger_database: LedgerDatabase,
) -> None:
    """Two INSERTs of entries and three COPYs of their postings, in another order: every
    entry was named by some postings statement, so the commit passes; the transaction's
    pending and covered rows are all gone after it."""
    with ledger_database.service_connection() as connection:
        usdt_a, usdt_b, _ = _accounts(connection)
        first = _entries(connection, 30)
        second = _entries(connection, 30, "second")
        _copy_postings(connection, _two_legs(second[:10] + first[20:], usdt_a, usdt_b))
        _copy_postings(connection, _two_legs(first[:20], usdt_a, usdt_b))
        _copy_postings(connection, _two_legs(second[10:], usdt_a, usdt_b))
        connection.commit()
    assert ledger_database.count("postings") == 120
    assert ledger_database.count("entry_completeness_checks") == 0


def test_postings_rolled_back_to_a_savepoint_no_longer_cover_their_entries(
    ledger_database: LedgerDatabase,
) -> None:
    """What a postings statement proved is undone with it: the entries it covered are
    incomplete again, and the commit is refused."""
    with ledger_database.service_connection() as connection:
        usdt_a, usdt_b, _ = _accounts(connection)
        entries = _entries(connection, 10)
        _copy_postings(connection, _two_legs(entries[:5], usdt_a, usdt_b))
        connection.execute("SAVEPOINT later_postings")
        _copy_postings(connection, _two_legs(entries[5:], usdt_a, usdt_b))
        connection.execute("ROLLBACK TO SAVEPOINT later_postings")
        with pytest.raises(psycopg.Error, match=f"entry {entries[5]} was committed without"):
            connection.commit()
    assert ledger_database.count("journal_entries") == 0
    assert ledger_database.count("entry_completeness_checks") == 0


def test_a_refused_postings_statement_covers_nothing(ledger_database: LedgerDatabase) -> None:
    """A batch refused for one unbalanced entry leaves none of its entries covered."""
    with ledger_database.service_connection() as connection:
        usdt_a, usdt_b, _ = _accounts(connection)
        entries = _entries(connection, 10)
        connection.execute("SAVEPOINT postings")
        with pytest.raises(psycopg.Error, match=f"entry {entries[3]} does not balance"):
            _copy_postings(connection, _two_legs(entries, usdt_a, usdt_b, short_entry=entries[3]))
        connection.execute("ROLLBACK TO SAVEPOINT postings")
        with pytest.raises(psycopg.Error, match=f"entry {entries[0]} was committed without"):
            connection.commit()
    assert ledger_database.count("journal_entries") == 0


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO entry_completeness_checks (entry_ids) VALUES ('{}')",
        "DELETE FROM entry_completeness_checks",
        "SELECT * FROM entry_completeness_checks",
    ],
)
def test_the_service_role_cannot_touch_the_pending_checks(
    ledger_database: LedgerDatabase, statement: str
) -> None:
    """Only the SECURITY DEFINER triggers queue and clear checks: the service cannot remove
    a queued check to commit an incomplete entry."""
    with (
        ledger_database.service_connection() as connection,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        connection.execute(statement)


def test_entry_ids_come_in_blocks_that_never_collide_with_default_ids(
    ledger_database: LedgerDatabase,
) -> None:
    with ledger_database.service_connection() as connection:
        first = [
            int(str(r[0]))
            for r in connection.execute("SELECT ledger_allocate_entry_ids(300)").fetchall()
        ]
        defaulted = _new_entry(connection, 2)
        second = [
            int(str(r[0]))
            for r in connection.execute("SELECT ledger_allocate_entry_ids(10)").fetchall()
        ]
        connection.rollback()
    assert len(set(first)) == 300
    assert first == sorted(first)
    assert first[-1] < defaulted < second[0]
    assert second == list(range(second[0], second[0] + 10))
