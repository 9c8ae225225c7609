"""Rebuild and invariant check find what is wrong, including what the triggers would refuse."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.balance_checks import check_invariants, rebuild_balances
from ledger.journal import AccountKey, AccountKind
from ledger.settlement import Settlement
from ledger.testing import EventStream
from tests.integration.ledger.ledger_support import LedgerDatabase


async def _post_some(settlement: Settlement) -> None:
    stream = EventStream()
    await settlement.post(
        [
            stream.deposit("alice", "USDT", 1_000),
            stream.deposit("bob", "BTC", 10),
            stream.reserve("alice", "USDT", 600),
            stream.reserve("bob", "BTC", 5),
            stream.trade(buyer="alice", seller="bob", quantity=5, notional=500, buyer_fee=1),
        ]
    )


async def test_a_consistent_ledger_has_no_violation_and_nothing_to_rebuild(
    settlement: Settlement, ledger_engine: AsyncEngine
) -> None:
    await _post_some(settlement)
    assert await check_invariants(ledger_engine) == []
    report = await rebuild_balances(ledger_engine, dry_run=False)
    assert report.differences == ()
    assert report.accounts_rebuilt == 9


async def test_a_drifted_balance_is_reported_then_rebuilt(
    settlement: Settlement, ledger_engine: AsyncEngine, ledger_database: LedgerDatabase
) -> None:
    await _post_some(settlement)
    before = ledger_database.balances()
    with ledger_database.owner_connection() as connection:
        connection.execute(
            "UPDATE balances SET balance = balance + 7 WHERE account_id = "
            "(SELECT account_id FROM accounts WHERE owner_id = 'bob' AND asset = 'USDT')"
        )
    [violation] = await check_invariants(ledger_engine)
    assert (violation.invariant, violation.amount) == ("MATERIALIZED_MISMATCH", 7)
    dry = await rebuild_balances(ledger_engine, dry_run=True)
    bob = AccountKey("bob", "USDT", AccountKind.AVAILABLE)
    assert [(d.account, d.expected, d.actual) for d in dry.differences] == [(bob, 500, 507)]
    assert ledger_database.balances()[("bob", "USDT", 1)] == 507
    real = await rebuild_balances(ledger_engine, dry_run=False)
    assert real.differences == dry.differences
    assert ledger_database.balances() == before
    assert await check_invariants(ledger_engine) == []


async def test_negative_and_unbalanced_states_are_reported(
    settlement: Settlement, ledger_engine: AsyncEngine, ledger_database: LedgerDatabase
) -> None:
    stream = EventStream()
    # A release before its reservation (a gap): held goes negative until the gap fills.
    await settlement.post([stream.deposit("alice", "USDT", 10), stream.release("alice", "USDT", 4)])
    with ledger_database.owner_connection() as connection:
        # Only with the triggers switched off (superuser, replication role) can this happen.
        connection.execute("SET session_replication_role = replica")
        connection.execute(
            "INSERT INTO journal_entries (entry_id, kind, reference, leg_count) "
            "VALUES (999, 8, 'forged', 2)"
        )
        connection.execute(
            "INSERT INTO postings (entry_id, leg, account_id, amount) SELECT 999, 0, "
            "account_id, 3 FROM accounts WHERE owner_id = 'alice' AND kind = 1"
        )
    found = {(v.invariant, v.amount) for v in await check_invariants(ledger_engine)}
    assert found == {
        ("NEGATIVE_BALANCE", -4),
        ("ASSET_SUM_NOT_ZERO", 3),
        ("ENTRY_UNBALANCED", 3),
        ("ENTRY_UNBALANCED", 0),
        ("MATERIALIZED_MISMATCH", -3),
    }
