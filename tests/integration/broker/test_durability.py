"""Every acknowledged produce (acks=all) survives a SIGKILL of the broker at a random moment.

The broker is killed several times while an aiokafka producer (acks=all, as the core's
outbox) keeps sending, and restarted on the same data directory each time. Afterwards the
partition must hold every acknowledged record exactly once at dense offsets 0..end-1.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from infra.local.kafka_broker import LocalBroker
from tests.integration.broker.broker_support import create_topic, end_offsets, read_all

TOPIC = "durable.v1"
ROUNDS = 4


async def test_acknowledged_records_survive_sigkill_at_random_moments(
    kafka_broker: LocalBroker,
) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    bootstrap = kafka_broker.bootstrap_servers
    await create_topic(bootstrap, TOPIC, {"segment.bytes": str(64 * 1024)})
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        request_timeout_ms=15_000,
        retry_backoff_ms=50,
    )
    await producer.start()
    acked: list[bytes] = []
    failed = 0
    stop = asyncio.Event()

    async def produce() -> None:
        nonlocal failed
        number = 0
        while not stop.is_set():
            values = [f"v{number + i:07d}".encode() * 8 for i in range(rng.randint(1, 30))]
            number += len(values)
            futures = [await producer.send(TOPIC, value) for value in values]
            for value, future in zip(values, futures, strict=True):
                try:
                    await future
                except KafkaError:
                    failed += 1
                else:
                    acked.append(value)

    loop_task = asyncio.create_task(produce())
    try:
        for _round in range(ROUNDS):
            threshold = len(acked) + rng.randint(50, 800)
            while len(acked) < threshold:
                assert not loop_task.done(), loop_task
                await asyncio.sleep(0.001)
            kafka_broker.kill()
            await asyncio.to_thread(kafka_broker.start)
        threshold = len(acked) + 100
        while len(acked) < threshold:
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await loop_task
        await producer.stop()

    _earliest, latest = await end_offsets(bootstrap, TOPIC)
    records = await read_all(bootstrap, TOPIC, latest)
    offsets = [offset for offset, _ in records]
    values = Counter(value for _, value in records)
    assert offsets == list(range(latest)), "offsets are not dense from 0"
    assert not {v for v, n in values.items() if n > 1}, "records stored twice"
    missing = [value for value in acked if value not in values]
    assert not missing, f"{len(missing)} acknowledged records lost (seed {seed})"
    assert len(acked) >= 100 * ROUNDS
    print(f"acked {len(acked)}, failed {failed}, stored {latest}")
