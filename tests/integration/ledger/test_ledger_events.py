"""The ledger's own events (ledger.events.v1) on the real broker (Tansu) and PostgreSQL:
settlement, corrections, reconciliation, gaps and stale epochs produce their events; a
publisher stopped between the broker's acknowledgement and "published" re-sends the same
events with the same ids and seqs on restart; the outbox's rules hold in the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from exchange.events.v1.envelope_pb2 import PRODUCER_LEDGER, EventEnvelope
from sqlalchemy.ext.asyncio import AsyncEngine

from common.topics import LEDGER_EVENTS_TOPIC
from infra.local.kafka_broker import LocalBroker
from ledger.corrections import Corrections
from ledger.domain import EngineBalance
from ledger.events_outbox import LEDGER_STREAM
from ledger.events_publisher import LedgerEventsOptions, LedgerEventsPublisher
from ledger.journal import available, external
from ledger.reconciliation import Reconciliation
from ledger.settlement import Settlement
from ledger.testing import EventStream
from tests.integration.ledger.kafka_support import shard_events
from tests.integration.ledger.ledger_support import FakeCore, LedgerDatabase

Record = tuple[bytes, EventEnvelope]


async def _read_events(bootstrap_servers: str, count: int) -> list[Record]:
    """The first `count` records of the topic (offset 0 on; Tansu's "latest" is not used)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    partition = TopicPartition(LEDGER_EVENTS_TOPIC, 0)
    records: list[Record] = []
    try:
        consumer.assign([partition])
        consumer.seek(partition, 0)
        async with asyncio.timeout(30):
            while len(records) < count:
                batch = await consumer.getmany(partition, timeout_ms=200)
                for record in batch.get(partition, []):
                    envelope = EventEnvelope()
                    envelope.ParseFromString(record.value)
                    records.append((record.key, envelope))
    finally:
        await consumer.stop()
    return records


def _options(broker: LocalBroker) -> LedgerEventsOptions:
    return LedgerEventsOptions(bootstrap_servers=broker.bootstrap_servers, idle_seconds=0.02)


@pytest.fixture
async def publisher(
    kafka_broker: LocalBroker, ledger_engine: AsyncEngine
) -> AsyncIterator[LedgerEventsPublisher]:
    running = LedgerEventsPublisher(ledger_engine, _options(kafka_broker))
    running.start()
    yield running
    await running.stop()


def _runs(entry_ids: list[int]) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive ids, naively."""
    runs: list[tuple[int, int]] = []
    for entry_id in entry_ids:
        if runs and runs[-1][1] + 1 == entry_id:
            runs[-1] = (runs[-1][0], entry_id)
        else:
            runs.append((entry_id, entry_id))
    return runs


def _unpublished(ledger_database: LedgerDatabase) -> int:
    with ledger_database.owner_connection() as connection:
        row = connection.execute(
            "SELECT count(*) FROM ledger_outbox WHERE published_at IS NULL"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_settlement_publishes_one_entry_posted_per_entry_in_order(
    kafka_broker: LocalBroker,
    settlement: Settlement,
    publisher: LedgerEventsPublisher,
    ledger_database: LedgerDatabase,
) -> None:
    events = shard_events("shard-1", rounds=30)
    posted = []
    for start in range(0, len(events), 50):  # three batches: three outbox rows
        results = await settlement.post(events[start : start + 50])
        posted += [r.entry_id for r in results if r.entry_id is not None]
    assert ledger_database.count("ledger_outbox") == 3
    with ledger_database.owner_connection() as connection:
        stored = connection.execute(
            "SELECT entry_ids, entry_id_ranges::text FROM ledger_outbox ORDER BY outbox_id"
        ).fetchall()
    # Ids come in blocks: each batch is one run of consecutive ids, stored as a range.
    assert [ranges for _, ranges in stored] == [
        f"{{[{first},{last + 1})}}" for first, last in _runs(posted)
    ]
    assert {entry_ids for entry_ids, _ in stored} == {None}
    await publisher.wait_published(len(posted), timeout_seconds=30)
    records = await _read_events(kafka_broker.bootstrap_servers, len(posted))
    assert [envelope.event_id for _, envelope in records] == [
        f"ledger:entry-posted:{entry_id}" for entry_id in posted
    ]
    assert [envelope.seq for _, envelope in records] == list(range(1, len(posted) + 1))
    assert {key for key, _ in records} == {LEDGER_STREAM.encode()}
    _, first = records[0]
    assert first.producer == PRODUCER_LEDGER
    assert first.event_version == 1
    assert first.WhichOneof("payload") == "entry_posted"
    assert first.causation_id == events[0].event_id  # the core event it was posted from
    assert (first.shard_id, first.engine_seq) == ("shard-1", events[0].engine_seq)
    entry = first.entry_posted.entry
    assert entry.entry_id == str(posted[0])
    assert sorted((p.account.owner_id, p.account.kind, p.amount) for p in entry.postings) == [
        ("alice", 1, 10**9),
        ("exchange:external", 4, -(10**9)),
    ]
    trade = next(e for _, e in records if e.entry_posted.entry.kind == 3)  # ENTRY_KIND_TRADE
    assert len(trade.entry_posted.entry.postings) == 5
    assert _unpublished(ledger_database) == 0


async def test_rows_with_an_id_array_and_with_id_ranges_publish_the_same_way(
    kafka_broker: LocalBroker,
    ledger_engine: AsyncEngine,
    settlement: Settlement,
    ledger_database: LedgerDatabase,
) -> None:
    """A row written before migration 0005 (`entry_ids`) and rows with several ranges (ids
    with holes) are expanded to one EntryPosted per entry, in id order."""
    stream = EventStream()
    results = await settlement.post([stream.deposit(f"owner-{n}", "USDT", 5) for n in range(4)])
    posted = [r.entry_id for r in results if r.entry_id is not None]
    with ledger_database.owner_connection() as connection:
        connection.execute(  # as 0004 wrote them; and ranges with holes: {first, third}
            "INSERT INTO ledger_outbox (entry_ids) VALUES (%s)", ([posted[1], posted[3]],)
        )
        connection.execute(
            "INSERT INTO ledger_outbox (entry_id_ranges) VALUES (%s::int8multirange)",
            (f"{{[{posted[0]},{posted[0]}],[{posted[2]},{posted[2]}]}}",),
        )
        connection.commit()
    expected = [*posted, posted[1], posted[3], posted[0], posted[2]]
    publisher = LedgerEventsPublisher(ledger_engine, _options(kafka_broker))
    publisher.start()
    try:
        await publisher.wait_published(len(expected), timeout_seconds=30)
    finally:
        await publisher.stop()
    records = await _read_events(kafka_broker.bootstrap_servers, len(expected))
    assert [envelope.event_id for _, envelope in records] == [
        f"ledger:entry-posted:{entry_id}" for entry_id in expected
    ]
    assert [envelope.seq for _, envelope in records] == list(range(1, len(expected) + 1))


async def test_correction_steps_and_reconciliation_produce_events(
    kafka_broker: LocalBroker,
    ledger_engine: AsyncEngine,
    settlement: Settlement,
    publisher: LedgerEventsPublisher,
) -> None:
    stream = EventStream()
    [deposit] = await settlement.post([stream.deposit("alice", "USDT", 100)])
    assert deposit.entry_id is not None
    corrections = Corrections(ledger_engine, settlement.writer)
    reversal = await corrections.request(
        operator_id="ops-ann", request_id="r1", reason="twice", reverse_entry_id=deposit.entry_id
    )
    await corrections.request(  # a retry: the same correction, no second event
        operator_id="ops-ann", request_id="r1", reason="twice", reverse_entry_id=deposit.entry_id
    )
    await corrections.approve(operator_id="ops-bob", correction_id=reversal.correction_id)
    applied = await corrections.apply(operator_id="ops-ann", correction_id=reversal.correction_id)
    await corrections.apply(operator_id="ops-ann", correction_id=reversal.correction_id)  # again
    other = await corrections.request(
        operator_id="ops-ann",
        request_id="r3",
        reason="wrong",
        postings=[(available("alice", "USDT"), 1), (external("USDT"), -1)],
    )
    await corrections.reject(operator_id="ops-bob", correction_id=other.correction_id)
    core = FakeCore({0: [], 1: [EngineBalance("alice", "USDT", 0, 0)]}, engine_seq=1)
    reconciliation = Reconciliation(ledger_engine, core, shard_id="shard-1")
    report = await reconciliation.reconcile(symbol="-")
    await reconciliation.reconcile(symbol="-")  # the same report: the same event

    expected = [
        ("entry_posted", f"ledger:entry-posted:{deposit.entry_id}"),
        ("correction_requested", f"ledger:correction-requested:{reversal.correction_id}"),
        ("correction_approved", f"ledger:correction-approved:{reversal.correction_id}"),
        ("entry_posted", f"ledger:entry-posted:{applied.applied_entry_ids[0]}"),
        ("correction_applied", f"ledger:correction-applied:{reversal.correction_id}"),
        ("correction_requested", f"ledger:correction-requested:{other.correction_id}"),
        ("correction_rejected", f"ledger:correction-rejected:{other.correction_id}"),
        ("reconciliation_completed", None),
    ]
    await publisher.wait_published(len(expected), timeout_seconds=30)
    records = await _read_events(kafka_broker.bootstrap_servers, len(expected))
    seen = [(e.WhichOneof("payload"), e.event_id) for _, e in records]
    assert [kind for kind, _ in seen] == [kind for kind, _ in expected]
    for (_, event_id), (_, wanted) in zip(seen, expected, strict=True):
        if wanted is not None:
            assert event_id == wanted
    envelopes = [e for _, e in records]
    assert [e.seq for e in envelopes] == list(range(1, len(expected) + 1))
    assert envelopes[2].correction_approved.correction.approved_by == "ops-bob"
    assert envelopes[4].correction_applied.correction.applied_entry_ids == [
        str(applied.applied_entry_ids[0])
    ]
    assert envelopes[3].entry_posted.entry.reverses_entry_id == str(deposit.entry_id)
    completed = envelopes[7].reconciliation_completed.report
    assert (completed.status, completed.ledger_engine_seq) == (int(report.status), 1)
    assert envelopes[7].event_id.startswith("ledger:reconciliation:")


async def test_gap_and_stale_epoch_produce_events(
    kafka_broker: LocalBroker, settlement: Settlement, publisher: LedgerEventsPublisher
) -> None:
    leader = EventStream(epoch=2)
    market = [leader.order_accepted(f"trader-{n}", symbol="BTC-USDT") for n in range(4)]
    await settlement.post([market[0], market[3]])  # seq 2..3 of BTC-USDT missing
    zombie = EventStream(epoch=1, engine_seq=100)
    await settlement.post([zombie.deposit("mallory", "USDT", 1_000_000)])
    await settlement.post([market[1], market[2]])  # the hole fills: no new event
    await publisher.wait_published(2, timeout_seconds=30)
    records = await _read_events(kafka_broker.bootstrap_servers, 2)
    gap, stale = (envelope for _, envelope in records)
    assert gap.event_id == "ledger:sequence-gap:shard-1:BTC-USDT:2-3"
    assert (gap.sequence_gap_detected.gap.symbol, gap.shard_id) == ("BTC-USDT", "shard-1")
    assert (
        gap.sequence_gap_detected.gap.first_missing_seq,
        gap.sequence_gap_detected.gap.last_missing_seq,
    ) == (2, 3)
    assert gap.causation_id == market[3].event_id
    ignored = stale.stale_epoch_event_ignored
    assert stale.event_id == "ledger:stale-epoch:shard-1:101:0"
    assert (ignored.ignored_event_id, ignored.event_epoch, ignored.current_epoch) == (
        "shard-1:101:0",
        1,
        2,
    )
    assert [gap.seq, stale.seq] == [1, 2]


async def test_a_publisher_stopped_before_marking_published_resends_the_same_events(
    kafka_broker: LocalBroker,
    ledger_engine: AsyncEngine,
    settlement: Settlement,
    ledger_database: LedgerDatabase,
) -> None:
    events = shard_events("shard-1", rounds=10)
    results = await settlement.post(events)
    entry_ids = [r.entry_id for r in results if r.entry_id is not None]
    await settlement.post([EventStream(epoch=0, engine_seq=500).deposit("carol", "BTC", 5)])
    total = len(entry_ids) + 1
    sent = asyncio.Event()

    async def hang_after_send() -> None:
        sent.set()
        await asyncio.Event().wait()  # "crash" here: acknowledged, not marked published

    first = LedgerEventsPublisher(ledger_engine, _options(kafka_broker), after_send=hang_after_send)
    first.start()
    await asyncio.wait_for(sent.wait(), 30)
    await first.stop()  # the task is cancelled before it marks anything published
    assert _unpublished(ledger_database) == 2
    with ledger_database.owner_connection() as connection:
        seqs = connection.execute(
            "SELECT first_seq, event_count FROM ledger_outbox ORDER BY outbox_id"
        ).fetchall()
    assert seqs == [(1, len(entry_ids)), (len(entry_ids) + 1, 1)]  # assigned before sending

    second = LedgerEventsPublisher(ledger_engine, _options(kafka_broker))
    second.start()
    try:
        await second.wait_published(total, timeout_seconds=30)
    finally:
        await second.stop()
    records = await _read_events(kafka_broker.bootstrap_servers, 2 * total)
    before = [envelope.SerializeToString() for _, envelope in records[:total]]
    after = [envelope.SerializeToString() for _, envelope in records[total:]]
    assert before == after  # the same events, ids, seqs and bytes
    assert [e.seq for _, e in records[:total]] == list(range(1, total + 1))
    assert {e.event_id for _, e in records} == {
        *(f"ledger:entry-posted:{entry_id}" for entry_id in entry_ids),
        records[total - 1][1].event_id,
    }
    assert len({e.event_id for _, e in records}) == total  # nothing lost, nothing new
    assert _unpublished(ledger_database) == 0


async def test_the_outbox_rules_hold_in_the_database(
    settlement: Settlement, ledger_database: LedgerDatabase
) -> None:
    await settlement.post([EventStream().deposit("alice", "USDT", 5)])
    with ledger_database.service_connection() as connection:
        for statement in (
            "DELETE FROM ledger_outbox",
            "TRUNCATE ledger_outbox",
            "UPDATE ledger_outbox SET entry_ids = '{2,3}'",
            "UPDATE ledger_outbox SET entry_id_ranges = '{[2,3]}'",
            "DELETE FROM journal_entries",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                connection.execute(statement)
            connection.rollback()
        connection.execute("UPDATE ledger_outbox SET first_seq = 1, event_count = 1")
        connection.commit()
        with pytest.raises(psycopg.Error, match="has its seqs already"):
            connection.execute("UPDATE ledger_outbox SET first_seq = 7, event_count = 1")
        connection.rollback()
    with ledger_database.owner_connection() as connection:
        with pytest.raises(psycopg.Error, match="not published yet"):
            connection.execute("DELETE FROM ledger_outbox")
        connection.rollback()
        for statement in (
            "UPDATE ledger_outbox SET entry_ids = '{2,3}'",
            "UPDATE ledger_outbox SET entry_id_ranges = '{[2,3]}'",
        ):
            with pytest.raises(psycopg.Error, match="is immutable"):
                connection.execute(statement)
            connection.rollback()
        with pytest.raises(psycopg.errors.CheckViolation):  # a batch names at least one entry
            connection.execute("INSERT INTO ledger_outbox (entry_id_ranges) VALUES ('{}')")
        connection.rollback()
        connection.execute("UPDATE ledger_outbox SET published_at = now()")
        with pytest.raises(psycopg.Error, match="published already"):
            connection.execute("UPDATE ledger_outbox SET published_at = NULL")
        connection.rollback()
        connection.execute("UPDATE ledger_outbox SET published_at = now()")
        connection.execute("DELETE FROM ledger_outbox")  # retention: the owner, published rows
        connection.commit()
    assert ledger_database.count("ledger_outbox") == 0
