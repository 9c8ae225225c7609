"""ListEntries by reference: an entry is found by its reference, its source event id or its
transfer id, and each of the three is looked up through an index (migration 0007)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.journal import EntryKind
from ledger.read_model import ENTRY_BY_REFERENCE, list_entries
from ledger.settlement import Settlement
from ledger.testing import EventStream
from tests.integration.ledger.ledger_support import LedgerDatabase


async def _kinds(engine: AsyncEngine, reference: str) -> list[EntryKind]:
    entries, _ = await list_entries(
        engine, owner_id="", asset="", kind=None, reference=reference, page_size=0, page_token=""
    )
    return [entry.kind for entry in entries]


async def test_an_entry_is_found_by_each_of_its_names(
    settlement: Settlement, ledger_engine: AsyncEngine
) -> None:
    stream = EventStream()
    deposit = stream.deposit("alice", "USDT", 1_000_000)
    events = [
        deposit,
        stream.deposit("bob", "BTC", 1_000),
        reserve := stream.reserve("alice", "USDT", 500_000),
        stream.reserve("bob", "BTC", 100),
        trade := stream.trade(buyer="alice", seller="bob", quantity=100, notional=500_000),
    ]
    await settlement.post(events)
    assert await _kinds(ledger_engine, reserve.event_id) == [EntryKind.RESERVE]
    assert await _kinds(ledger_engine, deposit.event_id) == [EntryKind.DEPOSIT]
    assert await _kinds(ledger_engine, deposit.funds_deposited.transfer_id) == [EntryKind.DEPOSIT]
    trade_reference = f"{trade.shard_id}:{trade.trade_executed.trade_id}"
    assert await _kinds(ledger_engine, trade_reference) == [EntryKind.TRADE]
    assert await _kinds(ledger_engine, trade.event_id) == [EntryKind.TRADE]
    assert await _kinds(ledger_engine, "no-such-reference") == []
    assert len(await _kinds(ledger_engine, "")) == len(events)


@pytest.mark.parametrize("name", ["event-1", "shard-1:7", "deposit-1"])
def test_a_lookup_by_reference_reads_indexes_not_the_journal(
    ledger_database: LedgerDatabase, name: str
) -> None:
    """With sequential scans priced out, the planner still finds an index path for every
    alternative: no `Seq Scan on journal_entries`."""
    with ledger_database.service_connection() as connection:
        connection.execute("SET enable_seqscan = off")
        plan = "\n".join(
            str(row[0])
            for row in connection.execute(
                psycopg.sql.SQL(  # the clause as list_entries sends it
                    "EXPLAIN SELECT e.entry_id FROM journal_entries AS e WHERE "
                    + ENTRY_BY_REFERENCE
                ),
                {"reference": name},
            )
        )
    assert "Seq Scan on journal_entries" not in plan, plan
    assert "journal_entries_trade_source_event_id_idx" in plan, plan


async def _page(engine: AsyncEngine, token: str) -> tuple[list[int], str]:
    entries, next_token = await list_entries(
        engine, owner_id="", asset="", kind=None, reference="", page_size=2, page_token=token
    )
    return [entry.entry_id for entry in entries], next_token


async def test_entries_posted_while_a_client_pages_shift_nothing(
    settlement: Settlement, ledger_engine: AsyncEngine
) -> None:
    """ListEntries pages by the last entry id (a keyset), not by an offset: with an offset,
    every entry posted between two pages repeated the last one of the page before."""
    stream = EventStream()
    await settlement.post([stream.deposit(f"trader-{n}", "USDT", 1_000 + n) for n in range(5)])
    first, token = await _page(ledger_engine, "")
    await settlement.post([stream.deposit(f"late-{n}", "USDT", 7) for n in range(3)])
    seen = list(first)
    while token:
        page, token = await _page(ledger_engine, token)
        seen += page
    assert len(seen) == len(set(seen)) == 5  # each of the first five once, the late ones not
    assert seen == sorted(seen, reverse=True)  # newest first throughout
