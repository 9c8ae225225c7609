"""Open files and memory of the broker stay flat while the log grows by many segments."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from infra.local.kafka_broker import LocalBroker
from tests.integration.broker.broker_support import (
    create_topic,
    end_offsets,
    open_files,
    rss_bytes,
    segment_files,
    wait_until,
)

SEGMENT_BYTES = 8192
VALUE = b"r" * 200


async def _produce(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=2, max_batch_size=2048
    )
    await producer.start()
    try:
        for _ in range(count):
            await producer.send(topic, VALUE)
        await producer.flush()
    finally:
        await producer.stop()


async def test_open_files_do_not_grow_with_segments(kafka_broker: LocalBroker) -> None:
    assert kafka_broker.pid is not None
    assert kafka_broker.data_dir is not None
    bootstrap = kafka_broker.bootstrap_servers
    topic = "many-segments.v1"
    await create_topic(bootstrap, topic, {"segment.bytes": str(SEGMENT_BYTES)})
    await _produce(bootstrap, topic, 500)
    warm = open_files(kafka_broker.pid)
    await _produce(bootstrap, topic, 10_000)  # ~2.7 MB: ~300 more segments
    segments = len(segment_files(kafka_broker.data_dir, topic))
    grown = open_files(kafka_broker.pid) - warm
    assert segments > 200
    assert grown < 10, f"{grown} more open files after {segments} segments"
    assert await end_offsets(bootstrap, topic) == (0, 10_500)


async def test_memory_is_flat_under_retention() -> None:
    with LocalBroker(retention_check_seconds=0.1) as broker:
        assert broker.pid is not None
        assert broker.data_dir is not None
        data_dir = broker.data_dir
        bootstrap = broker.bootstrap_servers
        topic = "retained.v1"
        await create_topic(
            bootstrap,
            topic,
            {"segment.bytes": str(SEGMENT_BYTES), "retention.bytes": str(8 * SEGMENT_BYTES)},
        )
        await _produce(bootstrap, topic, 4_000)  # warm-up
        warm_rss = rss_bytes(broker.pid)
        warm_files = open_files(broker.pid)
        for _ in range(4):
            await _produce(bootstrap, topic, 4_000)

        async def trimmed() -> bool:
            return len(segment_files(data_dir, topic)) <= 12

        await wait_until(trimmed, timeout_seconds=10, what="retention kept up")
        grown_rss = rss_bytes(broker.pid) - warm_rss
        grown_files = open_files(broker.pid) - warm_files
        earliest, latest = await end_offsets(bootstrap, topic)
    print(f"rss grew {grown_rss / 2**20:.1f} MiB, files {grown_files}")
    assert (latest, earliest > 16_000 - 1_000) == (20_000, True)
    assert grown_files < 10
    # 16,000 more records went through; retention keeps ~64 KB of them.
    assert grown_rss < 8 * 2**20, f"RSS grew {grown_rss / 2**20:.1f} MiB"
