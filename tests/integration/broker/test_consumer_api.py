"""What the services' consumers rely on: fetch long-poll wakes on new data, ListOffsets
LATEST is the end, topic creation is idempotent, a lone group member joins at once, and
committed offsets survive a restart. Real aiokafka and confluent-kafka clients."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient, NewTopic

from infra.local.kafka_broker import LocalBroker
from tests.integration.broker.broker_support import create_topic, end_offsets

LONG_POLL_MS = 20_000


async def test_fetch_long_poll_returns_when_data_arrives(kafka_broker: LocalBroker) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = "poll.v1"
    await create_topic(bootstrap, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, fetch_max_wait_ms=LONG_POLL_MS, fetch_min_bytes=1
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    partition = TopicPartition(topic, 0)
    try:
        consumer.assign([partition])
        consumer.seek(partition, 0)
        empty = await consumer.getmany(partition, timeout_ms=300)  # a fetch is now parked
        waiting = asyncio.create_task(consumer.getmany(partition, timeout_ms=LONG_POLL_MS))
        sent = await producer.send_and_wait(topic, b"wake up")
        acked_at = time.monotonic()
        batch = await waiting
        waited = time.monotonic() - acked_at
    finally:
        await producer.stop()
        await consumer.stop()
    assert empty == {}
    assert [(r.offset, r.value) for r in batch[partition]] == [(sent.offset, b"wake up")]
    # Far below the long poll's 20 s: the parked fetch was woken by the produce.
    assert waited < 5, f"the fetch answered {waited:.1f} s after the produce"


def test_list_offsets_latest_is_the_end_of_the_log(kafka_broker: LocalBroker) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = "latest.v1"
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for number in range(250):
        producer.produce(topic, f"m{number}".encode(), timestamp=1_000_000 + number)
    assert producer.flush(15) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "latest-probe"})
    try:
        low, high = consumer.get_watermark_offsets(ConfluentPartition(topic, 0), timeout=10)
        (by_time,) = consumer.offsets_for_times(
            [ConfluentPartition(topic, 0, 1_000_000 + 120)], timeout=10
        )
    finally:
        consumer.close()
    assert (low, high) == (0, 250)
    assert asyncio.run(end_offsets(bootstrap, topic)) == (0, 250)
    # Batches of several records: the found offset is the first of the batch holding it.
    assert 0 <= by_time.offset <= 120


def test_create_topics_is_idempotent(kafka_broker: LocalBroker) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers})
    topic = NewTopic("created.v1", num_partitions=3, replication_factor=1)
    for future in admin.create_topics([topic], operation_timeout=10).values():
        future.result(timeout=10)
    again = admin.create_topics([topic], operation_timeout=10)["created.v1"]
    with pytest.raises(KafkaException) as raised:
        again.result(timeout=10)
    metadata = admin.list_topics(timeout=10)
    assert raised.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    assert sorted(metadata.topics["created.v1"].partitions) == [0, 1, 2]
    assert metadata.topics["created.v1"].error is None


def test_a_lone_group_member_joins_at_once_and_its_commits_survive_a_restart(
    kafka_broker: LocalBroker,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = "grouped.v1"
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for number in range(10):
        producer.produce(topic, f"g{number}".encode())
    assert producer.flush(15) == 0
    assigned: list[float] = []
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "lone",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.list_topics(timeout=10)  # connected: time the join only
        subscribed_at = time.monotonic()
        consumer.subscribe([topic], on_assign=lambda _c, _p: assigned.append(time.monotonic()))
        values: list[bytes] = []
        deadline = time.monotonic() + 15
        while len(values) < 10 and time.monotonic() < deadline:
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                values.append(message.value())
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert values == [f"g{number}".encode() for number in range(10)]
    assert assigned, "never assigned"
    join_seconds = assigned[0] - subscribed_at
    assert join_seconds < 1, f"a lone member took {join_seconds:.2f} s to join"

    kafka_broker.kill()
    kafka_broker.start()
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "lone"})
    try:
        (committed,) = reader.committed([ConfluentPartition(topic, 0)], timeout=10)
    finally:
        reader.close()
    assert committed.offset == 10
