"""Reconciliation against an injected core view: differences, gaps, sequence numbers."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.domain import EngineBalance, GapReport, LagBound, ReconciliationStatus
from ledger.journal import AccountKey, AccountKind
from ledger.reconciliation import Reconciliation
from ledger.settlement import Settlement
from ledger.testing import EventStream
from tests.integration.ledger.ledger_support import FakeCore

AFTER_FUNDING = [
    EngineBalance("alice", "USDT", 30_000, 0),
    EngineBalance("bob", "BTC", 100, 0),
]
AFTER_TRADE = [
    EngineBalance("alice", "USDT", 4_000, 950),
    EngineBalance("alice", "BTC", 50, 0),
    EngineBalance("bob", "BTC", 40, 10),
    EngineBalance("bob", "USDT", 24_975, 0),
    EngineBalance("exchange:fees", "USDT", 75, 0),
]
AFTER_RELEASE = [
    EngineBalance("alice", "USDT", 4_950, 0),
    *AFTER_TRADE[1:],
]


def _day(stream: EventStream) -> list:  # type: ignore[type-arg]
    return [
        stream.deposit("alice", "USDT", 30_000),  # engine_seq 1
        stream.deposit("bob", "BTC", 100),  # 2
        stream.reserve("bob", "BTC", 60),  # 3  (BTC-USDT seq 1)
        stream.reserve("alice", "USDT", 26_000),  # 4  (seq 2)
        stream.trade(
            buyer="alice", seller="bob", quantity=50, notional=25_000, buyer_fee=50, seller_fee=25
        ),  # 5 (seq 3)
        stream.release("alice", "USDT", 950),  # 6 (seq 4)
    ]


def _core(engine_seq: int = 6) -> FakeCore:
    return FakeCore(
        {1: AFTER_FUNDING[:1], 2: AFTER_FUNDING, 5: AFTER_TRADE, 6: AFTER_RELEASE}, engine_seq
    )


async def test_matching_books_at_the_latest_and_an_earlier_engine_seq(
    settlement: Settlement, ledger_engine: AsyncEngine
) -> None:
    await settlement.post(_day(EventStream()))
    core = _core()
    reconciliation = Reconciliation(ledger_engine, core, shard_id="shard-1")
    report = await reconciliation.reconcile(symbol="-")
    assert (report.status, report.differences, report.gaps) == (
        ReconciliationStatus.MATCHED,
        (),
        (),
    )
    assert (report.engine_seq, report.ledger_engine_seq, report.core_engine_seq) == (6, 6, 6)
    # At engine_seq 2 only the deposits count, on both sides; reservations at 3-4 too.
    assert (await reconciliation.reconcile(symbol="-", at_engine_seq=2)).status is (
        ReconciliationStatus.MATCHED
    )
    market = await reconciliation.reconcile(symbol="BTC-USDT", at_engine_seq=5)
    assert market.status is ReconciliationStatus.MATCHED
    assert core.asked == [6, 2, 5]


async def test_every_difference_is_reported(
    settlement: Settlement, ledger_engine: AsyncEngine
) -> None:
    await settlement.post(_day(EventStream()))
    core = _core()
    core.by_engine_seq = {6: [*AFTER_RELEASE[:-1], EngineBalance("exchange:fees", "USDT", 70, 5)]}
    report = await Reconciliation(ledger_engine, core, shard_id="shard-1").reconcile(symbol="-")
    assert report.status is ReconciliationStatus.DIFFERENCES
    # The supply agrees (70 + 5 = 75), so the external account does not differ.
    assert [(d.account, d.expected, d.actual) for d in report.differences] == [
        (AccountKey("exchange:fees", "USDT", AccountKind.HELD), 5, 0),
        (AccountKey("exchange:fees", "USDT", AccountKind.FEES), 70, 75),
    ]


async def test_gaps_are_reported_until_filled_and_a_missing_tail_too(
    settlement: Settlement, ledger_engine: AsyncEngine
) -> None:
    events = _day(EventStream())
    core = _core()
    reconciliation = Reconciliation(ledger_engine, core, shard_id="shard-1")
    await settlement.post(events[:3] + events[4:])  # BTC-USDT seq 2 missing
    report = await reconciliation.reconcile(symbol="BTC-USDT")
    assert report.status is ReconciliationStatus.DIFFERENCES
    assert report.gaps == (GapReport("BTC-USDT", 2, 2, resolved=False),)
    assert report.differences  # alice's reservation is missing from the ledger
    await settlement.post(events[3:4])
    report = await reconciliation.reconcile(symbol="BTC-USDT")
    assert (report.status, report.gaps) == (
        ReconciliationStatus.MATCHED,
        (GapReport("BTC-USDT", 2, 2, resolved=True),),
    )
    # The core says BTC-USDT reached seq 6 by engine_seq 6, the ledger saw 4: the tail is missing.
    ledger_engine_seq = await reconciliation.report_engine_seq(
        shard_id="shard-1", epoch=1, engine_seq=6, market_seqs={"BTC-USDT": 6, "": 2}
    )
    assert ledger_engine_seq == 6
    report = await reconciliation.reconcile(symbol="-")
    assert report.gaps[-1] == GapReport("BTC-USDT", 5, 6, resolved=False)
    assert report.status is ReconciliationStatus.DIFFERENCES


async def test_the_ledger_behind_the_requested_engine_seq(
    settlement: Settlement, ledger_engine: AsyncEngine
) -> None:
    await settlement.post(_day(EventStream())[:2])
    report = await Reconciliation(ledger_engine, _core(), shard_id="shard-1").reconcile(
        symbol="-", at_engine_seq=6
    )
    assert (report.status, report.ledger_engine_seq) == (ReconciliationStatus.BEHIND, 2)


async def _stall_ledger_for(ledger_engine: AsyncEngine, seconds: int) -> None:
    """As if the ledger had last advanced `seconds` ago (a consumer that stopped)."""
    async with ledger_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE shard_positions SET advanced_at = now() - make_interval(secs => :seconds)"
            ),
            {"seconds": seconds},
        )


async def test_a_lagging_ledger_never_reads_matched(
    settlement: Settlement, ledger_engine: AsyncEngine
) -> None:
    # The ledger posted engine_seq 1-2; the core is at 6, every command with events.
    await settlement.post(_day(EventStream())[:2])
    core = _core()
    bound = LagBound(engine_seqs_max=10, stalled_ms_max=30_000)
    reconciliation = Reconciliation(ledger_engine, core, shard_id="shard-1", lag_bound=bound)
    # Within both bounds: what was compared matches, and the lag is reported.
    report = await reconciliation.reconcile(symbol="-")
    assert (report.status, report.engine_seq, report.lag_engine_seqs) == (
        ReconciliationStatus.MATCHED,
        2,
        4,
    )
    assert report.stalled_ms < 30_000
    # Stalled past the time bound with events unposted: LAGGING, for one market too.
    await _stall_ledger_for(ledger_engine, 31)
    for symbol in ("-", "BTC-USDT"):
        report = await reconciliation.reconcile(symbol=symbol)
        assert (report.status, report.lag_engine_seqs) == (ReconciliationStatus.LAGGING, 4)
        assert 31_000 <= report.stalled_ms < 60_000
    # Past the seq bound, however recently the ledger advanced.
    await _stall_ledger_for(ledger_engine, 0)
    tight = Reconciliation(
        ledger_engine, core, shard_id="shard-1", lag_bound=LagBound(engine_seqs_max=3)
    )
    assert (await tight.reconcile(symbol="-")).status is ReconciliationStatus.LAGGING
    # Differences still read DIFFERENCES: they say more than the lag.
    core.by_engine_seq = {2: [EngineBalance("alice", "USDT", 1, 0)], 6: AFTER_RELEASE}
    assert (await tight.reconcile(symbol="-")).status is ReconciliationStatus.DIFFERENCES


async def test_an_idle_ledger_without_unposted_events_is_not_lagging(
    settlement: Settlement, ledger_engine: AsyncEngine
) -> None:
    # The core sequenced 3-6 without events (retried commands): nothing is missing.
    await settlement.post(_day(EventStream())[:2])
    core = FakeCore({1: AFTER_FUNDING[:1], 2: AFTER_FUNDING}, 6, last_event_engine_seq=2)
    await _stall_ledger_for(ledger_engine, 3600)
    report = await Reconciliation(
        ledger_engine, core, shard_id="shard-1", lag_bound=LagBound(engine_seqs_max=0)
    ).reconcile(symbol="-")
    assert (report.status, report.lag_engine_seqs, report.stalled_ms) == (
        ReconciliationStatus.MATCHED,
        0,
        0,
    )
