"""A torn or garbage tail of the active segment is cut off at start; the records before it
stay, and new produces continue at the offset after the last intact batch."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from infra.local.kafka_broker import LocalBroker
from tests.integration.broker.broker_support import (
    create_topic,
    end_offsets,
    read_all,
    segment_files,
)

TOPIC = "torn.v1"


async def _produce(bootstrap: str, values: list[bytes]) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        return [(await producer.send_and_wait(TOPIC, value)).offset for value in values]
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
