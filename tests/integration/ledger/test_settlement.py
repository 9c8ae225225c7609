"""Settlement on a real PostgreSQL: posting rules, duplicates, redelivery, order, gaps, epochs."""

from __future__ import annotations

import pytest
from exchange.events.v1.envelope_pb2 import EventEnvelope

from ledger.db.offsets import OffsetAdvance, OffsetConflictError
from ledger.domain import IngestOutcome
from ledger.errors import LedgerError, Reason
from ledger.journal import AccountKind
from ledger.settlement import Settlement
from ledger.testing import EventStream
from tests.integration.ledger.ledger_support import LedgerDatabase

AVAILABLE, HELD, FEES, EXTERNAL = (int(kind) for kind in AccountKind)


def _trading_day(stream: EventStream) -> list[EventEnvelope]:
    """Alice buys 0.5 BTC from Bob for 25,000 USDT; fees 50 (taker) and 25 (maker)."""
    return [
        stream.deposit("alice", "USDT", 30_000),
        stream.deposit("bob", "BTC", 100),
        stream.order_accepted("bob"),
        stream.reserve("bob", "BTC", 60),
        stream.order_accepted("alice"),
        stream.reserve("alice", "USDT", 26_000),
        stream.trade(
            buyer="alice", seller="bob", quantity=50, notional=25_000, buyer_fee=50, seller_fee=25
        ),
        stream.release("alice", "USDT", 950),
    ]


EXPECTED = {
    ("alice", "USDT", AVAILABLE): 30_000 - 26_000 + 950,
    ("alice", "BTC", AVAILABLE): 50,
    ("bob", "BTC", AVAILABLE): 40,
    ("bob", "BTC", HELD): 10,
    ("bob", "USDT", AVAILABLE): 25_000 - 25,
    ("exchange:fees", "USDT", FEES): 75,
    ("exchange:external", "USDT", EXTERNAL): -30_000,
    ("exchange:external", "BTC", EXTERNAL): -100,
}


async def test_a_trading_day_posts_the_core_balance_moves(
    settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    events = _trading_day(EventStream())
    results = await settlement.post(events)
    assert [r.outcome for r in results] == [
        IngestOutcome.POSTED,
        IngestOutcome.POSTED,
        IngestOutcome.NO_POSTING,
        IngestOutcome.POSTED,
        IngestOutcome.NO_POSTING,
        IngestOutcome.POSTED,
        IngestOutcome.POSTED,
        IngestOutcome.POSTED,
    ]
    assert ledger_database.balances() == EXPECTED
    assert ledger_database.count("journal_entries") == 6
    assert ledger_database.count("postings") == 2 + 2 + 2 + 2 + 5 + 2


async def test_duplicates_in_a_batch_and_across_batches_post_once(
    settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    events = _trading_day(EventStream())
    first = await settlement.post(events + events[2:5])
    assert [r.outcome for r in first[8:]] == [IngestOutcome.DUPLICATE] * 3
    assert first[9].entry_id == first[3].entry_id  # the earlier entry is named
    again = await settlement.post(events)
    assert {r.outcome for r in again} == {IngestOutcome.DUPLICATE}
    assert [r.entry_id for r in again] == [r.entry_id for r in first[:8]]
    assert ledger_database.balances() == EXPECTED
    assert ledger_database.count("sequence_gaps") == 0


async def test_a_trade_settles_once_even_under_another_event_id(
    settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    stream = EventStream()
    events = _trading_day(stream)
    await settlement.post(events)
    replayed = stream.trade(buyer="alice", seller="bob", quantity=50, notional=25_000, trade_id="1")
    [result] = await settlement.post([replayed])
    assert result.outcome is IngestOutcome.DUPLICATE
    assert ledger_database.balances() == EXPECTED


async def test_out_of_order_and_gaps_are_recorded_then_resolved(
    settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    events = _trading_day(EventStream())
    # The market stream BTC-USDT is seq 1..6 (events[2:]); deliver 1, 2, 5, 6 first.
    await settlement.post(events[:4] + events[6:])
    with ledger_database.owner_connection() as connection:
        holes = connection.execute(
            "SELECT symbol, first_missing_seq, last_missing_seq FROM sequence_holes"
        ).fetchall()
        gaps = connection.execute(
            "SELECT symbol, first_missing_seq, last_missing_seq FROM sequence_gaps"
        ).fetchall()
    assert holes == gaps == [("BTC-USDT", 3, 4)]
    # The missing two arrive late (out of order, 4 before 3): the hole closes, nothing doubles.
    results = await settlement.post([events[5], events[4], events[5]])
    assert [r.outcome for r in results] == [
        IngestOutcome.POSTED,
        IngestOutcome.NO_POSTING,
        IngestOutcome.DUPLICATE,
    ]
    assert ledger_database.balances() == EXPECTED
    assert ledger_database.count("sequence_holes") == 0
    assert ledger_database.count("sequence_gaps") == 1  # the audit record stays


async def test_events_of_a_fenced_off_epoch_are_ignored_and_reported(
    settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    new_leader = EventStream(epoch=2)
    zombie = EventStream(epoch=1, engine_seq=100)
    await settlement.post([new_leader.deposit("alice", "USDT", 10)])
    [result] = await settlement.post([zombie.deposit("mallory", "USDT", 1_000_000)])
    assert result.outcome is IngestOutcome.STALE_EPOCH
    assert ledger_database.balances() == {
        ("alice", "USDT", AVAILABLE): 10,
        ("exchange:external", "USDT", EXTERNAL): -10,
    }
    with ledger_database.owner_connection() as connection:
        stale = connection.execute(
            "SELECT event_id, event_epoch, current_epoch FROM stale_epoch_events"
        ).fetchall()
    assert stale == [("shard-1:101:0", 1, 2)]


async def test_a_malformed_event_refuses_the_whole_batch(
    settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    stream = EventStream()
    good = stream.deposit("alice", "USDT", 10)
    bad = stream.reserve("alice", "USDT", -5)
    with pytest.raises(LedgerError) as refused:
        await settlement.post([good, bad])
    assert refused.value.reason is Reason.FIELD_INVALID
    assert ledger_database.count("journal_entries") == 0
    assert ledger_database.count("stream_positions") == 0


async def test_offsets_advance_with_the_batch_and_only_from_where_they_are(
    settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    stream = EventStream()
    advance = OffsetAdvance("ledger", "core.events.v1", 0, 0, 1)
    await settlement.post([stream.deposit("alice", "USDT", 10)], offsets=[advance])
    late = OffsetAdvance("ledger", "core.events.v1", 0, 0, 2)
    with pytest.raises(OffsetConflictError):
        await settlement.post([stream.deposit("alice", "USDT", 5)], offsets=[late])
    assert ledger_database.balances()[("alice", "USDT", AVAILABLE)] == 10
