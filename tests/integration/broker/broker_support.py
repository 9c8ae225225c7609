"""Helpers of the broker's storage tests: a broker process per test, topics, reading back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def create_topic(
    bootstrap: str, name: str, configs: dict[str, str] | None = None, partitions: int = 1
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
    finally:
        await admin.close()


async def read_all(bootstrap: str, topic: str, end: int) -> list[tuple[int, bytes]]:
    """(offset, value) of every record of partition 0 from the log start up to `end`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    partition = TopicPartition(topic, 0)
    records: list[tuple[int, bytes]] = []
    try:
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        deadline = time.monotonic() + 20
        while (not records or records[-1][0] < end - 1) and time.monotonic() < deadline:
            batch = await consumer.getmany(partition, timeout_ms=1000)
            records.extend((r.offset, r.value or b"") for r in batch.get(partition, []))
    finally:
        await consumer.stop()
    return records


async def end_offsets(bootstrap: str, topic: str) -> tuple[int, int]:
    """(earliest, latest) of partition 0 by ListOffsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        earliest = (await consumer.beginning_offsets([partition]))[partition]
        latest = (await consumer.end_offsets([partition]))[partition]
    finally:
        await consumer.stop()
    return earliest, latest


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, timeout_seconds: float, what: str
) -> None:
    """Poll `condition` until true; AssertionError naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_seconds
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_seconds} s: {what}")
        await asyncio.sleep(0.05)


def segment_files(data_dir: Path, topic: str, partition: int = 0) -> list[Path]:
    return sorted((data_dir / "topics" / topic / str(partition)).glob("*.log"))


def open_files(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")
