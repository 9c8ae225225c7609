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
