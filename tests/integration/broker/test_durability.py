"""Every acknowledged produce (acks=all) survives a SIGKILL of the broker at a random moment.

The broker is killed several times while an aiokafka producer (acks=all, as the core's
outbox) keeps sending, and restarted on the same data directory each time. Afterwards the
partition must hold every acknowledged record exactly once at dense offsets 0..end-1.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from confluent_kafka import Message, Producer

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


def test_confluent_producer_records_survive_sigkill(kafka_broker: LocalBroker) -> None:
    """The same with confluent-kafka (librdkafka, as Quix Streams produces): idempotent,
    acks=all; the broker is killed from this thread while librdkafka's keeps sending."""
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    bootstrap = kafka_broker.bootstrap_servers
    topic = "durable-confluent.v1"
    asyncio.run(create_topic(bootstrap, topic, {"segment.bytes": str(64 * 1024)}))
    acked: list[bytes] = []
    errors: list[str] = []

    def delivered(error: object, message: Message) -> None:
        if error is None:
            acked.append(message.value())
        else:
            errors.append(str(error))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
            "retry.backoff.ms": 50,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 200,
        }
    )
    number = 0

    def send_until(count: int) -> None:
        nonlocal number
        deadline = time.monotonic() + 30
        while len(acked) < count:
            assert time.monotonic() < deadline, f"stuck at {len(acked)} acks: {errors[-3:]}"
            for _ in range(rng.randint(1, 30)):
                producer.produce(topic, f"c{number:07d}".encode() * 8, on_delivery=delivered)
                number += 1
            producer.poll(0.001)

    for _round in range(ROUNDS):
        send_until(len(acked) + rng.randint(50, 800))
        kafka_broker.kill()
        kafka_broker.start()
    send_until(len(acked) + 100)
    assert producer.flush(30) == 0
    assert not errors, errors[:3]

    _earliest, latest = asyncio.run(end_offsets(bootstrap, topic))
    records = asyncio.run(read_all(bootstrap, topic, latest))
    values = Counter(value for _, value in records)
    assert [offset for offset, _ in records] == list(range(latest)), "offsets not dense"
    assert not {v for v, n in values.items() if n > 1}, f"records stored twice (seed {seed})"
    assert latest == number, f"{number} produced, {latest} stored (seed {seed})"
    assert all(value in values for value in acked)
