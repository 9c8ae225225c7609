"""Consumer groups: members share partitions and take over a leaver's at once; committed
offsets stay correct across a SIGKILL while their file stays small however often they
are committed."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.local.kafka_broker import LocalBroker
from tests.integration.broker.broker_support import create_topic, wait_until

COMMITS = 3_000


async def test_committed_offsets_file_stays_small(kafka_broker: LocalBroker) -> None:
    assert kafka_broker.data_dir is not None
    bootstrap = kafka_broker.bootstrap_servers
    topic = "committed.v1"
    await create_topic(bootstrap, topic, partitions=2)
    partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id="often", enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        for number in range(1, COMMITS + 1):
            await consumer.commit({partitions[0]: number, partitions[1]: 2 * number})
    finally:
        await consumer.stop()
    size = (kafka_broker.data_dir / "offsets.log").stat().st_size
    kafka_broker.kill()
    await asyncio.to_thread(kafka_broker.start)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="often")
    await reader.start()
    try:
        committed = [await reader.committed(p) for p in partitions]
    finally:
        await reader.stop()
    assert committed == [COMMITS, 2 * COMMITS]
    # 6,000 offsets committed, ~50 bytes a line: without compaction ~300 KB.
    assert size < 100_000, f"offsets.log is {size} bytes after {COMMITS} commits"


async def test_members_share_partitions_and_a_leavers_are_reassigned(
    kafka_broker: LocalBroker,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = "shared.v1"
    await create_topic(bootstrap, topic, partitions=2)

    def member() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id="sharing",
            heartbeat_interval_ms=100,
            session_timeout_ms=6_000,
        )

    first, second = member(), member()
    await first.start()
    await second.start()
    stopped = False
    try:

        async def split() -> bool:
            await asyncio.gather(first.getmany(timeout_ms=50), second.getmany(timeout_ms=50))
            return len(first.assignment()) == 1 and len(second.assignment()) == 1

        await wait_until(split, timeout_seconds=15, what="two members with one partition each")
        assert first.assignment() | second.assignment() == {
            TopicPartition(topic, 0),
            TopicPartition(topic, 1),
        }
        await second.stop()  # LeaveGroup
        stopped = True

        async def taken_over() -> bool:
            await first.getmany(timeout_ms=50)
            return len(first.assignment()) == 2

        # Well inside the 6 s session timeout: the leave, not an expiry, moved them.
        await wait_until(taken_over, timeout_seconds=4, what="the leaver's partition reassigned")
    finally:
        await first.stop()
        if not stopped:
            await second.stop()
