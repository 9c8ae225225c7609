"""The local broker is a real Kafka-API server: aiokafka produces to it and consumes back."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.local.kafka_broker import LocalBroker


async def test_produce_and_consume_round_trip(kafka_broker: LocalBroker) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    "probe.v1",
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={"retention.ms": "-1"},
                )
            ]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers)
    await producer.start()
    try:
        for index in range(5):
            await producer.send_and_wait("probe.v1", key=b"k", value=f"m{index}".encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap_servers)
    await consumer.start()
    try:
        partition = TopicPartition("probe.v1", 0)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        received: list[bytes] = []
        while len(received) < 5:
            batch = await consumer.getmany(partition, timeout_ms=2000)
            assert batch, "the broker returned nothing within 2 s"
            received.extend(record.value or b"" for record in batch[partition])
    finally:
        await consumer.stop()
    assert received == [f"m{index}".encode() for index in range(5)]


def test_restart_on_the_same_port(kafka_broker: LocalBroker) -> None:
    port = kafka_broker.port
    kafka_broker.stop()
    running_after_stop = kafka_broker.running
    kafka_broker.start()
    assert (running_after_stop, kafka_broker.running, kafka_broker.port) == (False, True, port)
