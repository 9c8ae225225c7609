"""The consumer against the real broker: redelivery, restart, concurrent partitions."""

from __future__ import annotations

import asyncio

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.local.kafka_broker import LocalBroker
from ledger.consumer import ConsumerOptions, SettlementConsumer
from ledger.settlement import Settlement
from tests.integration.ledger.kafka_support import (
    create_topic,
    drain,
    expected_balances,
    publish,
    shard_events,
)
from tests.integration.ledger.ledger_support import LedgerDatabase


async def test_redelivered_records_and_a_restart_post_nothing_twice(
    kafka_broker: LocalBroker, ledger_engine: AsyncEngine, ledger_database: LedgerDatabase
) -> None:
    await create_topic(kafka_broker.bootstrap_servers, partitions=1)
    events = shard_events("shard-1", rounds=20)
    # The outbox republished a stretch after a crash: records 10..29 appear twice.
    published = events[:30] + events[10:]
    await publish(kafka_broker.bootstrap_servers, published, partition=0)
    options = ConsumerOptions(kafka_broker.bootstrap_servers, partitions=[0], batch_records_max=25)
    async with SettlementConsumer(Settlement(ledger_engine), ledger_engine, options) as consumer:
        await drain(consumer, len(published))
    assert ledger_database.balances() == expected_balances(shards=1, rounds=20)
    # A restart reads from the stored offset: nothing is read again.
    async with SettlementConsumer(Settlement(ledger_engine), ledger_engine, options) as restarted:
        assert await restarted.poll_once() == 0
        await publish(kafka_broker.bootstrap_servers, events[-5:], partition=0)
        await drain(restarted, 5)
    assert ledger_database.balances() == expected_balances(shards=1, rounds=20)
    assert ledger_database.count("journal_entries") == 2 + 20 * 4


async def test_concurrent_consumers_of_different_partitions(
    kafka_broker: LocalBroker, ledger_engine: AsyncEngine, ledger_database: LedgerDatabase
) -> None:
    shards = 3
    await create_topic(kafka_broker.bootstrap_servers, partitions=shards)
    total = 0
    for partition in range(shards):
        events = shard_events(f"shard-{partition}", rounds=60)
        total += len(events)
        await publish(kafka_broker.bootstrap_servers, events, partition=partition)
    consumers = [
        SettlementConsumer(
            Settlement(ledger_engine),
            ledger_engine,
            ConsumerOptions(
                kafka_broker.bootstrap_servers, partitions=[partition], batch_records_max=16
            ),
        )
        for partition in range(shards)
    ]
    for consumer in consumers:
        await consumer.start()
    try:
        await asyncio.gather(*(drain(consumer, total // shards) for consumer in consumers))
    finally:
        for consumer in consumers:
            await consumer.stop()
    # The same traders and the fee account in every shard: the rows every batch touched.
    assert ledger_database.balances() == expected_balances(shards=shards, rounds=60)


async def test_dropped_database_connections_stop_nothing_and_post_nothing_twice(
    kafka_broker: LocalBroker, ledger_engine: AsyncEngine, ledger_database: LedgerDatabase
) -> None:
    """PostgreSQL drops every connection of the ledger and refuses new ones for a while (as
    in a restart) while `run` settles: the consumer logs, backs off, resumes from its stored
    offsets and settles the rest exactly once (the crash campaign found `run` ending for
    good instead)."""
    await create_topic(kafka_broker.bootstrap_servers, partitions=1)
    events = shard_events("shard-1", rounds=40)
    options = ConsumerOptions(kafka_broker.bootstrap_servers, partitions=[0], batch_records_max=8)
    stop = asyncio.Event()
    async with SettlementConsumer(Settlement(ledger_engine), ledger_engine, options) as consumer:
        running = asyncio.create_task(consumer.run(stop))
        try:
            for start in range(0, len(events), 41):
                # As in a PostgreSQL restart: every connection dropped, none accepted for a
                # while, and events to settle arrive meanwhile.
                name = ledger_database.database.name
                with psycopg.connect(
                    ledger_database.database.cluster.conninfo("postgres"), autocommit=True
                ) as connection:
                    connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                    connection.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                        (name,),
                    )
                    await publish(
                        kafka_broker.bootstrap_servers, events[start : start + 41], partition=0
                    )
                    # Down until the consumer has met it (at least 1 s; a loaded machine
                    # may take longer to poll), then up again.
                    failures = consumer.dependency_failures
                    await asyncio.sleep(1.0)
                    for _ in range(200):
                        if consumer.dependency_failures > failures:
                            break
                        await asyncio.sleep(0.1)
                    connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

            async def settled() -> None:
                while ledger_database.count("journal_entries") < 2 + 40 * 4:
                    assert not running.done(), running
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(settled(), timeout=60)
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=30)
    assert consumer.dependency_failures >= 1
    assert ledger_database.balances() == expected_balances(shards=1, rounds=40)
    assert ledger_database.count("journal_entries") == 2 + 40 * 4
