"""Retention deletes whole old segments: the log start offset advances, ListOffsets EARLIEST
reports it, a fetch below it is OFFSET_OUT_OF_RANGE, and a consumer with
auto_offset_reset=earliest carries on from the new start."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from infra.local.kafka_broker import LocalBroker
from tests.integration.broker.broker_support import (
    create_topic,
    end_offsets,
    segment_files,
    wait_until,
)

SEGMENT_BYTES = 4096
VALUE = b"x" * 200


@pytest.fixture
def broker() -> Iterator[LocalBroker]:
    with LocalBroker(retention_check_seconds=0.1) as started:
        yield started


async def _produce(
    bootstrap: str, topic: str, count: int, *, timestamp_ms: int | None = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        for _ in range(count):
            await producer.send_and_wait(topic, VALUE, timestamp_ms=timestamp_ms)
    finally:
        await producer.stop()


def _base_offsets(broker: LocalBroker, topic: str) -> list[int]:
    assert broker.data_dir is not None
    return [int(path.stem) for path in segment_files(broker.data_dir, topic)]


async def test_retention_bytes_deletes_old_segments_and_moves_the_log_start(
    broker: LocalBroker,
) -> None:
    topic = "retained-bytes.v1"
    bootstrap = broker.bootstrap_servers
    await create_topic(
        bootstrap,
        topic,
        {"segment.bytes": str(SEGMENT_BYTES), "retention.bytes": str(4 * SEGMENT_BYTES)},
    )
    await _produce(bootstrap, topic, 400)  # ~110 KB: ~27 segments

    async def trimmed() -> bool:
        return len(_base_offsets(broker, topic)) <= 6

    await wait_until(trimmed, timeout_seconds=10, what="old segments deleted")
    earliest, latest = await end_offsets(bootstrap, topic)
    assert latest == 400
    assert earliest == _base_offsets(broker, topic)[0] > 0

    strict = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="none")
    await strict.start()
    partition = TopicPartition(topic, 0)
    try:
        strict.assign([partition])
        strict.seek(partition, 0)
        with pytest.raises(OffsetOutOfRangeError):
            await strict.getmany(partition, timeout_ms=5000)
    finally:
        await strict.stop()

    resetting = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await resetting.start()
    try:
        resetting.assign([partition])
        resetting.seek(partition, 0)
        batch = await resetting.getmany(partition, timeout_ms=5000)
        offsets = [record.offset for record in batch.get(partition, [])]
    finally:
        await resetting.stop()
    assert offsets, "nothing fetched after the reset to earliest"
    assert offsets[0] == earliest

    broker.stop()
    broker.start()
    assert await end_offsets(bootstrap, topic) == (earliest, 400), "log start lost on restart"


async def test_retention_ms_deletes_segments_older_than_the_limit(broker: LocalBroker) -> None:
    topic = "retained-ms.v1"
    bootstrap = broker.bootstrap_servers
    await create_topic(
        bootstrap, topic, {"segment.bytes": str(SEGMENT_BYTES), "retention.ms": "60000"}
    )
    old = int(time.time() * 1000) - 120_000
    await _produce(bootstrap, topic, 100, timestamp_ms=old)  # two minutes old: expired
    await _produce(bootstrap, topic, 100)  # fresh: kept
    fresh_start = 100

    async def expired() -> bool:
        return (await end_offsets(bootstrap, topic))[0] > 0

    await wait_until(expired, timeout_seconds=10, what="expired segments deleted")
    earliest, latest = await end_offsets(bootstrap, topic)
    assert latest == 200
    # Only segments whose newest record is expired go: the first fresh record stays.
    assert 0 < earliest <= fresh_start
    assert earliest == _base_offsets(broker, topic)[0]
