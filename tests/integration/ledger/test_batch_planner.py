"""The consumer's planner path (ledger/batch_planner.py + `Settlement.post_ready`) on a real
PostgreSQL: in the steady state a batch is posted by its COPY plan and leaves exactly what the
general path leaves; whenever the plan's assumptions do not hold against the stored state (a
gap, a redelivery, an older epoch, a trade settled before, a malformed record) the general
path posts it instead, in the same transaction; and the planner process can die."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg
import pytest
from exchange.events.v1.envelope_pb2 import EventEnvelope

from infra.local.postgres import PostgresCluster
from ledger.adjustments import AdjustmentStatus
from ledger.batch_planner import BatchPlanner, RecordPlanner, psycopg_conninfo
from ledger.db.connection import create_engine
from ledger.db.offsets import OffsetAdvance, OffsetConflictError
from ledger.domain import IngestOutcome
from ledger.errors import LedgerError, Reason
from ledger.journal import AccountKind
from ledger.settlement import Settlement
from ledger.testing import EventStream
from tests.integration.ledger.ledger_support import LedgerDatabase
from tests.paths import REPO_ROOT
from tests.support.local_stack import wait_until

AVAILABLE, HELD, FEES, EXTERNAL = (int(kind) for kind in AccountKind)
JOURNAL_TABLES = ("journal_entries", "postings", "ledger_outbox", "consumer_offsets")


@pytest.fixture
def planner(ledger_database: LedgerDatabase) -> Iterator[RecordPlanner]:
    planner = RecordPlanner(psycopg_conninfo(ledger_database.service_url))
    yield planner
    planner.close()


def _records(events: Sequence[EventEnvelope]) -> list[bytes]:
    return [event.SerializeToString() for event in events]


def _day(stream: EventStream, round_number: int) -> list[EventEnvelope]:
    """A reserve each, a trade with fees, a release; plus an order event (no posting)."""
    buyer, seller = f"buyer-{round_number % 3}", f"seller-{round_number % 2}"
    return [
        stream.order_accepted(buyer),
        stream.reserve(buyer, "USDT", 26_000),
        stream.reserve(seller, "BTC", 60),
        stream.trade(
            buyer=buyer, seller=seller, quantity=50, notional=25_000, buyer_fee=50, seller_fee=25
        ),
        stream.release(buyer, "USDT", 950),
    ]


def _workload() -> list[list[EventEnvelope]]:
    stream = EventStream()
    funding = [stream.deposit(f"buyer-{n}", "USDT", 10**9) for n in range(3)]
    funding += [stream.deposit(f"seller-{n}", "BTC", 10**6) for n in range(2)]
    funding.append(stream.adjust("buyer-0", "USDT", 7, transfer_id="adjustment-1"))
    days = [event for number in range(12) for event in _day(stream, number)]
    return [funding, days[:25], days[25:]]


def _journal(database: LedgerDatabase) -> list[tuple[object, ...]]:
    """Every entry with its postings by account (ids aside: they are allocated differently)."""
    with database.owner_connection() as connection:
        return connection.execute(
            "SELECT e.kind, e.reference, e.source_event_id, e.seq, e.engine_seq, e.epoch, "
            "e.occurred_at, e.transfer_id, p.leg, a.owner_id, a.asset, a.kind, p.amount "
            "FROM journal_entries AS e JOIN postings AS p USING (entry_id) "
            "JOIN accounts AS a USING (account_id) ORDER BY e.kind, e.reference, p.leg"
        ).fetchall()


def _positions(database: LedgerDatabase) -> list[tuple[object, ...]]:
    with database.owner_connection() as connection:
        return [
            *connection.execute(  # advanced_at: when each database posted, differs
                "SELECT shard_id, epoch, engine_seq_last FROM shard_positions ORDER BY 1"
            ).fetchall(),
            *connection.execute("SELECT * FROM stream_positions ORDER BY 1, 2").fetchall(),
        ]


def _request_adjustment(database: LedgerDatabase) -> None:
    """As `CreateAdjustment` records it before the core's event arrives."""
    with database.owner_connection() as connection:
        connection.execute(
            "INSERT INTO adjustments (adjustment_id, owner_id, asset, amount, memo, status, "
            "requested_by) VALUES ('adjustment-1', 'buyer-0', 'USDT', 7, 'test', %s, 'op-1')",
            (int(AdjustmentStatus.SUBMITTED),),
        )


def _adjustment(database: LedgerDatabase) -> tuple[object, ...] | None:
    with database.owner_connection() as connection:
        return connection.execute(
            "SELECT a.status, e.reference FROM adjustments AS a "
            "JOIN journal_entries AS e USING (entry_id)"
        ).fetchone()


async def test_steady_batches_are_posted_by_plan_exactly_as_the_general_path_posts_them(
    planner: RecordPlanner,
    settlement: Settlement,
    ledger_database: LedgerDatabase,
    postgres_cluster: PostgresCluster,
    ledger_template: str,
) -> None:
    batches = _workload()
    _request_adjustment(ledger_database)
    for number, batch in enumerate(batches):
        offsets = [OffsetAdvance("ledger-settlement", "core.events.v1", 0, number, number + 1)]
        posted = await settlement.post_ready(planner.plan(_records(batch)), offsets=offsets)
        assert (posted.events, posted.by_plan) == (len(batch), True)

    general = LedgerDatabase(
        postgres_cluster.create_database("ledger_general_path", template=ledger_template)
    )
    try:
        _request_adjustment(general)
        engine = create_engine(general.service_url)
        try:
            for batch in batches:
                await Settlement(engine).post(batch)
        finally:
            await engine.dispose()
        assert _journal(ledger_database) == _journal(general)
        assert ledger_database.balances() == general.balances()
        assert _positions(ledger_database) == _positions(general)
        assert _adjustment(ledger_database) == _adjustment(general)
    finally:
        postgres_cluster.drop_database(general.database.name)
    assert ledger_database.balances()[("buyer-0", "USDT", AVAILABLE)] == (
        10**9 + 7 - 4 * (26_000 - 950)
    )
    assert _adjustment(ledger_database) == (int(AdjustmentStatus.POSTED), "shard-1:6:0")
    with ledger_database.owner_connection() as connection:
        outboxed = connection.execute(
            "SELECT sum(upper(r) - lower(r)) FROM ledger_outbox, unnest(entry_id_ranges) AS r"
        ).fetchone()
        offset = connection.execute("SELECT next_offset FROM consumer_offsets").fetchone()
    assert outboxed == (ledger_database.count("journal_entries"),)
    assert offset == (len(batches),)


async def test_a_batch_after_a_gap_goes_the_general_path_and_the_gap_is_recorded(
    planner: RecordPlanner, settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    stream = EventStream()
    first = [stream.deposit("alice", "USDT", 1_000), stream.deposit("bob", "BTC", 10)]
    stream.deposit("carol", "USDT", 5)  # never delivered: seq 3 of the account stream
    after_gap = [stream.deposit("dave", "USDT", 9)]
    assert (await settlement.post_ready(planner.plan(_records(first)))).by_plan
    posted = await settlement.post_ready(planner.plan(_records(after_gap)))
    assert not posted.by_plan
    assert ledger_database.count("sequence_gaps") == 1
    assert ledger_database.balances()[("dave", "USDT", AVAILABLE)] == 9


async def test_a_redelivered_batch_posts_nothing_twice(
    planner: RecordPlanner, settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    batch = _workload()[0]
    ready = planner.plan(_records(batch))
    assert (await settlement.post_ready(ready)).by_plan
    balances, entries = ledger_database.balances(), ledger_database.count("journal_entries")
    again = await settlement.post_ready(planner.plan(_records(batch)))
    stale_plan = await settlement.post_ready(ready)  # the very same plan, replayed
    assert (again.by_plan, stale_plan.by_plan) == (False, False)
    assert ledger_database.balances() == balances
    assert ledger_database.count("journal_entries") == entries


async def test_a_trade_settled_before_under_another_event_id_is_not_settled_again(
    planner: RecordPlanner, settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    stream = EventStream()
    funding = [stream.deposit("alice", "USDT", 10**6), stream.deposit("bob", "BTC", 10**3)]
    trade = [stream.trade(buyer="alice", seller="bob", quantity=5, notional=500, trade_id="77")]
    await settlement.post(funding + trade)
    balances = ledger_database.balances()
    # The same trade id in a new event (a new seq of the market stream): a plan would COPY it.
    replayed = [stream.trade(buyer="alice", seller="bob", quantity=5, notional=500, trade_id="77")]
    posted = await settlement.post_ready(planner.plan(_records(replayed)))
    assert not posted.by_plan
    assert ledger_database.balances() == balances
    [result] = await settlement.post(replayed)
    assert result.outcome is IngestOutcome.DUPLICATE


async def test_events_of_an_older_epoch_are_ignored_not_planned(
    planner: RecordPlanner, settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    stream = EventStream(epoch=2)
    await settlement.post([stream.deposit("alice", "USDT", 100)])
    stream.epoch = 1  # the next event in the stream, written by a fenced-off instance
    posted = await settlement.post_ready(planner.plan(_records([stream.deposit("bob", "BTC", 1)])))
    assert not posted.by_plan
    assert ledger_database.count("stale_epoch_events") == 1
    assert ("bob", "BTC", AVAILABLE) not in ledger_database.balances()


async def test_a_malformed_record_is_refused_by_name_and_nothing_is_written(
    planner: RecordPlanner, settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    stream = EventStream()
    good = stream.deposit("alice", "USDT", 100)
    bad = stream.deposit("bob", "USDT", 100)
    bad.event_version = 99
    ready = planner.plan(_records([good, bad]))
    assert ready.plan is None
    with pytest.raises(LedgerError) as refused:
        await settlement.post_ready(ready)
    assert refused.value.reason is Reason.FIELD_INVALID
    assert [ledger_database.count(table) for table in JOURNAL_TABLES] == [0, 0, 0, 0]


async def test_an_offset_conflict_rolls_the_planned_batch_back(
    planner: RecordPlanner, settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    batch = _workload()[0]
    wrong_start = [OffsetAdvance("ledger-settlement", "core.events.v1", 0, 0, 6)]
    await settlement.post_ready(planner.plan(_records(batch[:1])), offsets=wrong_start)
    with pytest.raises(OffsetConflictError):
        await settlement.post_ready(planner.plan(_records(batch[1:])), offsets=wrong_start)
    assert ledger_database.count("journal_entries") == 1
    # Accounts and entry ids the planner took outside the transaction are harmless: the
    # batch posts later, by plan, and every invariant of the journal holds.
    right = [OffsetAdvance("ledger-settlement", "core.events.v1", 0, 6, 12)]
    assert (await settlement.post_ready(planner.plan(_records(batch[1:])), offsets=right)).by_plan
    assert ledger_database.count("journal_entries") == len(batch)


async def test_the_planner_process_plans_and_is_replaced_when_it_dies(
    settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    planner = BatchPlanner(ledger_database.service_url)
    try:
        batches = _workload()
        assert (await settlement.post_ready(await planner.plan(_records(batches[0])))).by_plan
        first = await planner.process_id()
        assert first != os.getpid()
        os.kill(first, signal.SIGKILL)
        await asyncio.sleep(0.2)
        for batch in batches[1:]:
            assert (await settlement.post_ready(await planner.plan(_records(batch)))).by_plan
        assert await planner.process_id() != first
    finally:
        planner.close()
    with psycopg.connect(ledger_database.database.conninfo()) as connection:
        problems = connection.execute(
            "SELECT count(*) FROM (SELECT asset FROM postings JOIN accounts USING (account_id) "
            "GROUP BY asset HAVING sum(amount) <> 0) AS unbalanced"
        ).fetchone()
    assert problems == (0,)


async def test_a_planner_whose_connection_is_lost_hands_over_to_the_general_path_then_reconnects(
    planner: RecordPlanner, settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    first, second, third = _workload()
    assert (await settlement.post_ready(planner.plan(_records(first)))).by_plan
    with ledger_database.owner_connection() as connection:  # as a database restart would
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE usename = 'ledger_app' AND pid <> pg_backend_pid()"
        )
    unplanned = planner.plan(_records(second))
    assert unplanned.plan is None
    assert not (await settlement.post_ready(unplanned)).by_plan
    assert (await settlement.post_ready(planner.plan(_records(third)))).by_plan
    assert ledger_database.count("journal_entries") == sum(
        1
        for batch in (first, second, third)
        for event in batch
        if event.WhichOneof("payload") not in {"order_accepted"}
    )


_PLANNER_OWNER = """
import asyncio, sys
from ledger.batch_planner import BatchPlanner

async def main() -> None:
    planner = BatchPlanner(sys.argv[1])
    print(await planner.process_id(), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_the_planner_process_exits_when_its_parent_is_killed(
    ledger_database: LedgerDatabase,
) -> None:
    owner = subprocess.Popen(  # a ledger service, as far as the planner can tell
        [sys.executable, "-c", _PLANNER_OWNER, ledger_database.service_url],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        planner_pid = int(owner.stdout.readline())
        assert _alive(planner_pid)
    finally:
        owner.kill()
        owner.wait()
    wait_until("the orphaned planner exits", lambda: not _alive(planner_pid), timeout_seconds=10)
