"""Topics and publishing for the ledger's tests against the real broker (Tansu)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from exchange.events.v1.envelope_pb2 import EventEnvelope

from ledger.consumer import CORE_EVENTS_TOPIC, SettlementConsumer
from ledger.testing import EventStream


async def create_topic(
    bootstrap_servers: str, partitions: int, topic: str = CORE_EVENTS_TOPIC
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs={"retention.ms": "-1"},
                )
            ]
        )
    finally:
        await admin.close()


async def publish(
    bootstrap_servers: str,
    envelopes: Sequence[EventEnvelope],
    *,
    partition: int,
    topic: str = CORE_EVENTS_TOPIC,
) -> None:
    """At-least-once publishing as the core's outbox does it: key = shard id, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                envelope.SerializeToString(),
                key=envelope.shard_id.encode(),
                partition=partition,
            )
            for envelope in envelopes
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()


def shard_events(shard_id: str, rounds: int) -> list[EventEnvelope]:
    """Deposits, reservations, trades and releases of one shard, all with the same traders."""
    stream = EventStream(shard_id=shard_id)
    events = [stream.deposit("alice", "USDT", 10**9), stream.deposit("bob", "BTC", 10**9)]
    for _ in range(rounds):
        events += [
            stream.reserve("alice", "USDT", 1_010),
            stream.reserve("bob", "BTC", 7),
            stream.trade(
                buyer="alice", seller="bob", quantity=7, notional=1_000, buyer_fee=2, seller_fee=1
            ),
            stream.release("alice", "USDT", 8),
        ]
    return events


def expected_balances(shards: int, rounds: int) -> dict[tuple[str, str, int], int]:
    return {
        ("alice", "USDT", 1): shards * (10**9 - rounds * 1_002),
        ("alice", "BTC", 1): shards * rounds * 7,
        ("bob", "BTC", 1): shards * (10**9 - rounds * 7),
        ("bob", "USDT", 1): shards * rounds * 999,
        ("exchange:fees", "USDT", 3): shards * rounds * 3,
        ("exchange:external", "USDT", 4): -shards * 10**9,
        ("exchange:external", "BTC", 4): -shards * 10**9,
    }


async def drain(consumer: SettlementConsumer, events_expected: int) -> None:
    async def until_done() -> None:
        while consumer.events_posted < events_expected:
            await consumer.poll_once()

    await asyncio.wait_for(until_done(), timeout=30)
