"""Reads across many sealed segments (whose index keeps one entry per 16 KiB of batches):
a fetch from any offset starts at the batch holding it, small fetch budgets walk the whole
log densely, and a lookup by timestamp finds the exact batch."""

from __future__ import annotations

import random

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.local.kafka_broker import LocalBroker
from tests.integration.broker.broker_support import create_topic, read_all, segment_files

RECORDS = 3_000


async def _consume_from(bootstrap: str, topic: str, offset: int, fetch_bytes: int) -> list[int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, max_partition_fetch_bytes=fetch_bytes)
    await consumer.start()
    partition = TopicPartition(topic, 0)
    try:
        consumer.assign([partition])
        consumer.seek(partition, offset)
        batch = await consumer.getmany(partition, timeout_ms=5000, max_records=50)
    finally:
        await consumer.stop()
    return [record.offset for record in batch.get(partition, [])]


async def test_fetches_from_any_offset_across_sealed_segments(kafka_broker: LocalBroker) -> None:
    assert kafka_broker.data_dir is not None
    bootstrap = kafka_broker.bootstrap_servers
    topic = "reads.v1"
    rng = random.Random(7)
    await create_topic(bootstrap, topic, {"segment.bytes": str(64 * 1024)})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic, bytes(rng.randrange(256) for _ in range(rng.randint(1, 900)))
            )
            for _ in range(RECORDS)
        ]
        await producer.flush()
    finally:
        await producer.stop()
    assert [(await f).offset for f in futures] == list(range(RECORDS))
    assert len(segment_files(kafka_broker.data_dir, topic)) > 10

    # Read back from the start: dense over every segment boundary.
    walked = await read_all(bootstrap, topic, RECORDS)
    assert [offset for offset, _ in walked] == list(range(RECORDS))
    kafka_broker.stop()
    kafka_broker.start()  # every segment but the last is now loaded sealed
    for offset in [0, RECORDS - 1, *rng.sample(range(RECORDS), 40)]:
        got = await _consume_from(bootstrap, topic, offset, rng.choice([1, 2048, 1 << 20]))
        expected = list(range(offset, min(offset + len(got), RECORDS)))
        assert got, f"nothing from offset {offset}"
        assert got == expected, f"from offset {offset}"


async def test_offsets_for_times_finds_the_exact_batch(kafka_broker: LocalBroker) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = "times.v1"
    await create_topic(bootstrap, topic, {"segment.bytes": str(16 * 1024)})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        for number in range(400):  # one record per batch, ~100 segments
            await producer.send_and_wait(topic, b"t" * 200, timestamp_ms=1_000_000 + 10 * number)
    finally:
        await producer.stop()
    kafka_broker.stop()
    kafka_broker.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    partition = TopicPartition(topic, 0)
    try:
        wanted = {5: 1_000_050, 6: 1_000_055, 250: 1_002_500, 399: 1_003_990}
        found = {}
        for expected, timestamp in wanted.items():
            answer = (await consumer.offsets_for_times({partition: timestamp}))[partition]
            found[expected] = None if answer is None else answer.offset
        after_end = (await consumer.offsets_for_times({partition: 2_000_000}))[partition]
    finally:
        await consumer.stop()
    assert found == {offset: offset for offset in wanted}
    assert after_end is None
