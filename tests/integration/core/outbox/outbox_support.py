"""Shared by the outbox tests: a workload with trades on two markets, the envelopes a WAL
implies (replayed from seq 1 on a fresh engine), and a plain consumer of a topic partition.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from core.contracts.events import EventEnvelope, envelopes_for, market_specs_of
from core.engine import Command, CreateAsset, CreateMarket, Deposit, Engine, Side
from core.engine.testing import BTC, USDT, btc_usdt_spec, limit_order
from core.outbox import (
    CORE_EVENTS_TOPIC,
    TRADE_EVENTS_TOPIC,
    JournalOptions,
    OutboxJournal,
    OutboxPublisher,
    PublisherOptions,
)
from core.sequencer import Sequencer, SequencerOptions, decode_command
from core.sequencer.testing import StepClock, btc_usdt_setup_commands
from core.wal.record_format import SegmentReader, parse_segment_name

SHARD_ID = "shard-1"
ETH = 10**8
ACCOUNTS = ("alice", "bob", "carol", "dave")
SYMBOLS = ("BTC-USDT", "ETH-USDT")


def setup_commands() -> list[Command]:
    """Assets, BTC-USDT and ETH-USDT, and funds for every account."""
    eth_usdt = btc_usdt_spec(
        symbol="ETH-USDT", base_asset="ETH", reference_price=3_000 * USDT, max_quantity=100 * ETH
    )
    commands: list[Command] = [
        *btc_usdt_setup_commands(),
        CreateAsset(asset="ETH", scale=8),
        CreateMarket(spec=eth_usdt),
    ]
    for account_id in ACCOUNTS:
        for asset, amount in (("USDT", 10**9 * USDT), ("BTC", 10**4 * BTC), ("ETH", 10**5 * ETH)):
            commands.append(
                Deposit(account_id=account_id, asset=asset, amount=amount, transfer_id=asset)
            )
    return commands


def trading_commands(round_index: int) -> list[Command]:
    """A resting sell and a crossing buy on each market: two trades per round."""
    seller = ACCOUNTS[round_index % len(ACCOUNTS)]
    buyer = ACCOUNTS[(round_index + 1) % len(ACCOUNTS)]
    tag = f"r{round_index}"
    return [
        limit_order(seller, Side.SELL, BTC // 100, 50_000 * USDT, client_order_id=f"{tag}-bs"),
        limit_order(buyer, Side.BUY, BTC // 100, 50_000 * USDT, client_order_id=f"{tag}-bb"),
        limit_order(
            seller,
            Side.SELL,
            ETH // 10,
            3_000 * USDT,
            symbol="ETH-USDT",
            client_order_id=f"{tag}-es",
        ),
        limit_order(
            buyer, Side.BUY, ETH // 10, 3_000 * USDT, symbol="ETH-USDT", client_order_id=f"{tag}-eb"
        ),
    ]


def expected_envelopes(shard_directory: Path, *, shard_id: str = SHARD_ID) -> list[EventEnvelope]:
    """Every envelope the shard's WAL implies, in engine order (the WAL must start at seq 1).

    Epochs are 0 here: compare with `without_epoch`.
    """
    engine = Engine()
    lookup = market_specs_of(engine)
    envelopes: list[EventEnvelope] = []
    segments = sorted(
        (first_seq, entry)
        for entry in shard_directory.iterdir()
        if (first_seq := parse_segment_name(entry.name)) is not None
    )
    expected_seq = 1
    for first_seq, path in segments:
        assert first_seq == expected_seq, f"WAL segment {path} does not start at {expected_seq}"
        reader = SegmentReader(path, first_seq=first_seq, epoch_floor=0)
        for record in reader.records():
            decoded = decode_command(record.payload)
            result = engine.apply(
                decoded.command, engine_seq=record.seq, timestamp_ns=decoded.timestamp_ns
            )
            envelopes.extend(
                envelopes_for(
                    result.events,
                    shard_id=shard_id,
                    epoch=0,
                    command=decoded.command,
                    market_spec=lookup,
                )
            )
            expected_seq = record.seq + 1
    return envelopes


def without_epoch(envelope: EventEnvelope) -> bytes:
    copy = EventEnvelope()
    copy.CopyFrom(envelope)
    copy.epoch = 0
    return copy.SerializeToString(deterministic=True)


@dataclass(frozen=True)
class RunningShard:
    sequencer: Sequencer
    journal: OutboxJournal
    publisher: OutboxPublisher


@asynccontextmanager
async def running_shard(
    directory: Path,
    bootstrap_servers: str,
    *,
    options: SequencerOptions,
    journal_options: JournalOptions | None = None,
) -> AsyncIterator[RunningShard]:
    """Sequencer + journal + a started publisher; closed in the service's order."""
    journal = OutboxJournal(shard_id=SHARD_ID, options=journal_options)
    sequencer = Sequencer.open(directory, clock=StepClock(), options=options, event_sink=journal)
    publisher = OutboxPublisher(journal, PublisherOptions(bootstrap_servers=bootstrap_servers))
    publisher.start()
    try:
        yield RunningShard(sequencer, journal, publisher)
    finally:
        await sequencer.aclose()
        await publisher.stop()
        await journal.aclose()


@dataclass(frozen=True)
class Consumed:
    key: bytes
    envelope: EventEnvelope


async def consume_partition(
    bootstrap_servers: str,
    topic: str,
    partition: int,
    *,
    until_ids: Iterable[str],
    timeout_seconds: float = 20.0,
) -> list[Consumed]:
    """Every record of the partition from offset 0, read until all `until_ids` were seen
    (or the timeout: the caller's assertions then show what is missing)."""
    wanted = set(until_ids)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    consumed: list[Consumed] = []
    try:
        topic_partition = TopicPartition(topic, partition)
        consumer.assign([topic_partition])
        consumer.seek(topic_partition, 0)
        deadline = time.monotonic() + timeout_seconds
        while wanted and time.monotonic() < deadline:
            batch = await consumer.getmany(topic_partition, timeout_ms=500)
            for record in batch.get(topic_partition, []):
                envelope = EventEnvelope.FromString(record.value or b"")
                consumed.append(Consumed(record.key or b"", envelope))
                wanted.discard(envelope.event_id)
    finally:
        await consumer.stop()
    return consumed


def first_occurrences(consumed: Iterable[Consumed]) -> list[EventEnvelope]:
    """Dedupe by event_id, keeping the first occurrence (what an idempotent consumer applies)."""
    seen: set[str] = set()
    firsts: list[EventEnvelope] = []
    for item in consumed:
        if item.envelope.event_id not in seen:
            seen.add(item.envelope.event_id)
            firsts.append(item.envelope)
    return firsts


async def assert_published_exactly(
    bootstrap_servers: str, shard_directory: Path, *, trade_partitions: int = 1
) -> list[Consumed]:
    """Both topics hold every event the WAL implies; deduped, in engine order (core.events.v1)
    and in per-symbol order (core.trade-events.v1). Returns what core.events.v1 held."""
    expected = expected_envelopes(shard_directory)
    expected_ids = [envelope.event_id for envelope in expected]
    consumed = await consume_partition(
        bootstrap_servers, CORE_EVENTS_TOPIC, 0, until_ids=expected_ids
    )
    firsts = first_occurrences(consumed)
    assert [envelope.event_id for envelope in firsts] == expected_ids
    assert [without_epoch(envelope) for envelope in firsts] == [
        without_epoch(envelope) for envelope in expected
    ]
    assert {item.key for item in consumed} == {SHARD_ID.encode()}

    expected_trades = [envelope for envelope in expected if envelope.HasField("trade_executed")]
    trades: list[Consumed] = []
    for partition in range(trade_partitions):
        trades.extend(
            await consume_partition(
                bootstrap_servers,
                TRADE_EVENTS_TOPIC,
                partition,
                until_ids=[
                    envelope.event_id
                    for envelope in expected_trades
                    if partition_of_symbol_matches(envelope, partition, trade_partitions)
                ],
                timeout_seconds=10.0,
            )
        )
    for symbol in SYMBOLS:
        symbol_trades = first_occurrences(item for item in trades if item.key == symbol.encode())
        assert [envelope.event_id for envelope in symbol_trades] == [
            envelope.event_id for envelope in expected_trades if envelope.symbol == symbol
        ]
    return consumed


def partition_of_symbol_matches(envelope: EventEnvelope, partition: int, partitions: int) -> bool:
    all_partitions = list(range(partitions))
    chosen = DefaultPartitioner()(envelope.symbol.encode(), all_partitions, all_partitions)
    return bool(chosen == partition)


async def wait_until(predicate: Callable[[], bool], *, timeout_seconds: float) -> None:
    """Poll `predicate` until it returns true (TimeoutError after the timeout)."""
    async with asyncio.timeout(timeout_seconds):
        while not predicate():
            await asyncio.sleep(0.01)
