"""Outbox benchmark: events/s the outbox publishes to the broker beside the raw aiokafka
produce rate of the same payloads to the same broker in the same run; and what the journal
costs the sequencer's submit rate.

    .venv/bin/python bench/outbox_bench.py [--rounds 5000] [--workers 16]

Phases (one local Tansu broker, memory storage, started here):
0. envelope cost: CPU time (this thread) per event to build and encode the journal payload of
   the same applied commands, old path (`envelopes_for` protobuf objects + `encode_events`)
   and new path (`EnvelopeSerializer` + `encode_serialized_events`), interleaved in the same
   run, median of several repetitions, and the ratio;
1. sequencer submit rate without an event sink, then with the outbox journal (publisher
   off): the journal's cost on the hot path;
2. outbox catch-up: the publisher starts with the whole journal behind it; time until the
   broker acknowledged everything (events/s, journal records/s);
3. raw aiokafka: the same envelope bytes, `send()` one by one (acks=all, default batching),
   then `flush()`; and `send_batch` of ~256 KiB batches, awaited one at a time;
4. ratio outbox / raw.
Figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from core.contracts.event_wire import EnvelopeSerializer
from core.contracts.events import envelopes_for, market_specs_of
from core.engine import ApplyResult, Command, Deposit, Side
from core.engine.testing import BTC, USDT, EngineDriver, limit_order
from core.outbox import (
    OutboxJournal,
    OutboxPublisher,
    PublisherOptions,
    TopicSpec,
    decode_events,
    encode_events,
    ensure_topics,
)
from core.outbox.journal_format import encode_serialized_events
from core.sequencer import Sequencer, SequencerOptions
from core.sequencer.testing import btc_usdt_setup_commands
from core.wal.record_format import SegmentReader, parse_segment_name
from infra.local.kafka_broker import LocalBroker

SHARD_ID = "bench-shard"
ACCOUNTS = tuple(f"acct-{index}" for index in range(16))
RAW_TOPIC = "bench.raw.v1"
RAW_BATCH_BYTES = 256 * 1024


def setup_commands() -> list[Command]:
    commands: list[Command] = list(btc_usdt_setup_commands())
    for account_id in ACCOUNTS:
        commands.append(
            Deposit(account_id=account_id, asset="USDT", amount=10**12 * USDT, transfer_id="u")
        )
        commands.append(
            Deposit(account_id=account_id, asset="BTC", amount=10**6 * BTC, transfer_id="b")
        )
    return commands


def round_commands(round_index: int) -> list[Command]:
    """A resting sell and a crossing buy: ~9 events for 2 commands."""
    seller = ACCOUNTS[round_index % len(ACCOUNTS)]
    buyer = ACCOUNTS[(round_index + 7) % len(ACCOUNTS)]
    return [
        limit_order(
            seller, Side.SELL, BTC // 100, 50_000 * USDT, client_order_id=f"s{round_index}"
        ),
        limit_order(buyer, Side.BUY, BTC // 100, 50_000 * USDT, client_order_id=f"b{round_index}"),
    ]


def envelope_cost(rounds: int, repetitions: int) -> tuple[float, float, int]:
    """(old, new) median CPU microseconds per event to turn the applied commands of
    `rounds` bench rounds into journal payloads, and the event count; asserts equal bytes."""
    driver = EngineDriver()
    for command in setup_commands():
        driver.apply(command)
    applied: list[tuple[Command, ApplyResult]] = [
        (command, driver.apply(command))
        for round_index in range(rounds)
        for command in round_commands(round_index)
    ]
    event_count = sum(len(result.events) for _, result in applied)
    market_spec = market_specs_of(driver.engine)

    def old() -> list[bytes]:
        return [
            encode_events(
                envelopes_for(
                    result.events,
                    shard_id=SHARD_ID,
                    epoch=1,
                    command=command,
                    market_spec=market_spec,
                )
            )
            for command, result in applied
        ]

    def new() -> list[bytes]:
        serializer = EnvelopeSerializer(shard_id=SHARD_ID, epoch=1, market_spec=market_spec)
        return [
            encode_serialized_events(result.events, serializer(result.events, command=command))
            for command, result in applied
        ]

    if old() != new():
        raise RuntimeError("the two envelope paths disagree")
    microseconds: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(repetitions):
        for name, convert in (("old", old), ("new", new)):
            started = time.thread_time()
            convert()
            microseconds[name].append((time.thread_time() - started) * 1e6 / event_count)
    return (
        statistics.median(microseconds["old"]),
        statistics.median(microseconds["new"]),
        event_count,
    )


async def submit_rounds(sequencer: Sequencer, rounds: int, workers: int) -> float:
    """Submit `rounds` rounds from `workers` concurrent tasks; return commands/s."""
    next_round = 0

    async def worker() -> None:
        nonlocal next_round
        while next_round < rounds:
            round_index = next_round
            next_round += 1
            await sequencer.submit(round_commands(round_index))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return 2 * rounds / (time.perf_counter() - started)


async def sequencer_rate(
    directory: Path, rounds: int, workers: int, *, journal: bool
) -> tuple[float, Sequencer, OutboxJournal | None]:
    sink = OutboxJournal(shard_id=SHARD_ID) if journal else None
    sequencer = Sequencer.open(
        directory,
        clock=time.time_ns,
        options=SequencerOptions(snapshot_every_commands=0),
        event_sink=sink,
    )
    await sequencer.submit(setup_commands())
    rate = await submit_rounds(sequencer, rounds, workers)
    return rate, sequencer, sink


def journal_envelopes(journal: OutboxJournal) -> list[bytes]:
    """Every envelope in the journal's files, in order (the raw producer's payloads)."""
    if journal.directory is None:
        raise RuntimeError("journal not started")
    values: list[bytes] = []
    segments = sorted(
        (first_seq, entry)
        for entry in journal.directory.iterdir()
        if (first_seq := parse_segment_name(entry.name)) is not None
    )
    for first_seq, path in segments:
        for record in SegmentReader(path, first_seq=first_seq, epoch_floor=0).records():
            values.extend(event.envelope for event in decode_events(record.payload))
    return values


async def raw_produce(broker: LocalBroker, values: list[bytes]) -> tuple[float, float]:
    await ensure_topics(
        broker.bootstrap_servers, [TopicSpec(name=RAW_TOPIC)], request_timeout_ms=10_000
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap_servers, acks="all", enable_idempotence=False
    )
    await producer.start()
    key = SHARD_ID.encode()
    try:
        started = time.perf_counter()
        for value in values:
            await producer.send(RAW_TOPIC, value=value, key=key, partition=0)
        await producer.flush()
        send_rate = len(values) / (time.perf_counter() - started)

        producer_batch = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap_servers,
            acks="all",
            enable_idempotence=False,
            max_batch_size=4 * RAW_BATCH_BYTES,
        )
        await producer_batch.start()
        try:
            started = time.perf_counter()
            index = 0
            while index < len(values):
                batch = producer_batch.create_batch()
                size = 0
                while index < len(values) and size < RAW_BATCH_BYTES:
                    batch.append(timestamp=None, key=key, value=values[index])
                    size += len(values[index])
                    index += 1
                await (await producer_batch.send_batch(batch, RAW_TOPIC, partition=0))
            batch_rate = len(values) / (time.perf_counter() - started)
        finally:
            await producer_batch.stop()
    finally:
        await producer.stop()
    return send_rate, batch_rate


async def main(rounds: int, workers: int) -> None:
    gc.freeze()
    old_us, new_us, cost_events = envelope_cost(min(rounds, 4_000), repetitions=7)
    print(f"envelope build + encode, CPU per event ({cost_events:,} events, median of 7)")
    print(f"  old: envelopes_for + encode_events {old_us:>10.2f} us/event")
    print(f"  new: EnvelopeSerializer            {new_us:>10.2f} us/event")
    print(f"  ratio old/new                      {old_us / new_us:>10.2f}")
    with tempfile.TemporaryDirectory() as temp, LocalBroker() as broker:
        root = Path(temp)
        bare_rate, bare, _ = await sequencer_rate(root / "bare", rounds, workers, journal=False)
        await bare.aclose()
        with_rate, sequencer, journal = await sequencer_rate(
            root / "outbox", rounds, workers, journal=True
        )
        if journal is None:
            raise RuntimeError("journal missing")
        await journal.flush()
        print(f"commands: {2 * rounds} in {rounds} submits of 2, {workers} concurrent submitters")
        print(f"sequencer submit, no event sink      {bare_rate:>10,.0f} commands/s")
        print(f"sequencer submit, outbox journal     {with_rate:>10,.0f} commands/s")
        print(f"  ratio journal/bare                 {with_rate / bare_rate:>10.2f}")

        values = journal_envelopes(journal)  # before the publisher's retention removes them
        publisher = OutboxPublisher(
            journal, PublisherOptions(bootstrap_servers=broker.bootstrap_servers)
        )
        started = time.perf_counter()
        publisher.start()
        await publisher.wait_published(sequencer.engine_seq, timeout_seconds=600)
        outbox_seconds = time.perf_counter() - started
        await publisher.stop()
        events = publisher.events_published_count
        outbox_rate = events / outbox_seconds
        print(
            f"outbox catch-up: {events:,} events ({publisher.records_published_count:,} records, "
            f"{publisher.rounds_count} rounds) in {outbox_seconds:.2f} s"
        )
        print(f"outbox publish (both topics, acked)  {outbox_rate:>10,.0f} events/s")

        await sequencer.aclose()
        await journal.aclose()
        send_rate, batch_rate = await raw_produce(broker, values)
        print(
            f"raw aiokafka send() + flush()        {send_rate:>10,.0f} events/s ({len(values):,})"
        )
        print(f"raw aiokafka send_batch, sequential  {batch_rate:>10,.0f} events/s")
        print(f"  ratio outbox/raw send()            {outbox_rate / send_rate:>10.2f}")
        print(f"  ratio outbox/raw send_batch        {outbox_rate / batch_rate:>10.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=16)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.workers))
