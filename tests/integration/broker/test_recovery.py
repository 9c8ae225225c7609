"""A torn or garbage tail of the active segment is cut off at start; the records before it
stay, and new produces continue at the offset after the last intact batch."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from infra.local.kafka_broker import LocalBroker
from tests.integration.broker.broker_support import (
    create_topic,
    end_offsets,
    read_all,
    segment_files,
)

TOPIC = "torn.v1"


async def _produce(bootstrap: str, values: list[bytes]) -> list[int]:
    return await _produce_to(bootstrap, TOPIC, values)


async def _produce_to(bootstrap: str, topic: str, values: list[bytes]) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        return [(await producer.send_and_wait(topic, value)).offset for value in values]
    finally:
        await producer.stop()


def _torn_copy_of_last_batch(data: bytes, keep: int) -> bytes:
    """The last batch of `data` (a segment of single-batch produces), cut to `keep` bytes."""
    position = 0
    last = 0
    while position < len(data):
        last = position
        position += int.from_bytes(data[position + 8 : position + 12], "big") + 12
    return data[last : last + keep]


@pytest.mark.parametrize(
    "tail",
    ["half a batch", "a header only", "garbage", "a batch with a bad crc", "a stale batch"],
)
async def test_a_torn_tail_is_truncated_at_start(tail: str) -> None:
    with LocalBroker() as broker:
        assert broker.data_dir is not None
        bootstrap = broker.bootstrap_servers
        await create_topic(bootstrap, TOPIC)
        values = [f"record-{i}".encode() * 20 for i in range(10)]
        assert await _produce(bootstrap, values) == list(range(10))
        broker.stop()
        (segment,) = segment_files(broker.data_dir, TOPIC)
        intact = segment.read_bytes()
        last = _torn_copy_of_last_batch(intact, len(intact))
        if tail == "half a batch":
            extra = last[: len(last) // 2]
        elif tail == "a header only":
            extra = last[:61]
        elif tail == "garbage":
            extra = bytes(range(256)) * 3
        elif tail == "a batch with a bad crc":
            extra = last[:-1] + bytes([last[-1] ^ 0xFF])
            extra = (10).to_bytes(8, "big") + extra[8:]
        else:  # a whole valid batch, but with the offset of an earlier one
            extra = last
        segment.write_bytes(intact + extra)

        broker.start()
        assert segment.stat().st_size == len(intact), "the tail was not truncated"
        assert await end_offsets(bootstrap, TOPIC) == (0, 10)
        assert await _produce(bootstrap, [b"after-1", b"after-2"]) == [10, 11]
        records = await read_all(bootstrap, TOPIC, 12)
    assert records == [(i, v) for i, v in enumerate([*values, b"after-1", b"after-2"])]


async def test_sealed_segment_indexes_are_used_and_a_bad_one_is_rebuilt() -> None:
    topic = "indexed.v1"
    with LocalBroker() as broker:
        assert broker.data_dir is not None
        bootstrap = broker.bootstrap_servers
        await create_topic(bootstrap, topic, {"segment.bytes": "2048"})
        values = [f"indexed-{i}".encode() * 10 for i in range(100)]
        assert await _produce_to(bootstrap, topic, values) == list(range(100))
        broker.stop()
        segments = segment_files(broker.data_dir, topic)
        indexes = sorted(segments[0].parent.glob("*.index"))
        # Every sealed segment has its index; the active one has none.
        assert [p.stem for p in indexes] == [p.stem for p in segments[:-1]]
        indexes[0].write_bytes(indexes[0].read_bytes()[:-3])  # torn
        indexes[1].write_bytes(b"\0" * len(indexes[1].read_bytes()))  # garbage
        indexes[2].unlink()  # lost
        broker.start()
        records = await read_all(bootstrap, topic, 100)
        assert await _produce_to(bootstrap, topic, [b"next"]) == [100]
        broker.stop()
        rebuilt = sorted(segments[0].parent.glob("*.index"))
    assert records == list(enumerate(values))
    assert [p.name for p in rebuilt[:3]] == [p.name for p in indexes[:3]]


async def test_a_deleted_topic_leaves_no_files_and_can_be_created_again(
    kafka_broker: LocalBroker,
) -> None:
    assert kafka_broker.data_dir is not None
    bootstrap = kafka_broker.bootstrap_servers
    topic = "deleted.v1"
    await create_topic(bootstrap, topic, {"segment.bytes": "1024"})
    await _produce_to(bootstrap, topic, [b"d" * 300 for _ in range(20)])
    assert list((kafka_broker.data_dir / "topics" / topic / "0").glob("*.index"))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    gone = not (kafka_broker.data_dir / "topics" / topic).exists()
    await create_topic(bootstrap, topic)
    assert (gone, await _produce_to(bootstrap, topic, [b"again"])) == (True, [0])
