"""Broker benchmark: this repository's broker (infra/broker, ADR 0014) under the clients the
services use.

    .venv/bin/python bench/broker_bench.py [--records 50000] [--value-bytes 200]

Phases (one broker process, data in a temporary directory, started here):
1. produce: `--records` values with aiokafka, acks=all, up to `--in-flight` sends
   outstanding (the core's outbox keeps rounds in flight the same way); records/s and the
   per-record latency (send to acknowledgement) p50/p99;
2. fetch: the same records read back from offset 0 by an aiokafka consumer; records/s;
3. fetch latency of one record at the end of a partition after 1k, 10k and 50k stored
   batches (one record per batch, as a lightly loaded producer writes them): median and
   p99 of `--probes` seek-to-end-minus-one fetches. Tansu's `memory://` engine measured
   1-4 ms at 1k and 21-26 ms at 40k batches, linear in the history (ADR 0014); a flat
   figure here is the point;
4. restart: time until a restarted broker on the same data accepts connections;
5. recovery of a long history: `--recovery-batches` copies of a real 270-byte batch (base
   offsets rewritten) in 16 MiB segments, loaded by `PartitionLog` twice in this process:
   first from the batch headers (no `.index` files yet: as before indexes were written),
   then from the `.index` files the first load wrote; both times and the ratio.
Figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.broker.storage import DEFAULT_SEGMENT_BYTES, LogConfig, PartitionLog, Syncer
from infra.local.kafka_broker import LocalBroker

PRODUCE_TOPIC = "bench.produce.v1"
HISTORY_TOPIC = "bench.history.v1"
HISTORY_STEPS = (1_000, 10_000, 50_000)
HISTORY_PRODUCERS = 8


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def create_topics(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(PRODUCE_TOPIC, 1, 1), NewTopic(HISTORY_TOPIC, 1, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, records: int, value_bytes: int, in_flight: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    latencies: list[float] = []
    window = asyncio.Semaphore(in_flight)

    def done(started: float, _future: object) -> None:
        latencies.append(time.perf_counter() - started)
        window.release()

    value = b"v" * value_bytes
    try:
        started = time.perf_counter()
        for number in range(records):
            await window.acquire()
            sent = time.perf_counter()
            future = await producer.send(PRODUCE_TOPIC, value, key=str(number).encode())
            future.add_done_callback(lambda f, s=sent: done(s, f))
        await producer.flush()
        while len(latencies) < records:
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    p50, p99 = percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3
    print(
        f"produce: {records:,} records of {value_bytes} B, acks=all, {in_flight} in flight: "
        f"{records / elapsed:,.0f} records/s; latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )


async def fetch_all(bootstrap: str, records: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    partition = TopicPartition(PRODUCE_TOPIC, 0)
    received = 0
    try:
        consumer.assign([partition])
        consumer.seek(partition, 0)
        started = time.perf_counter()
        while received < records:
            batch = await consumer.getmany(partition, timeout_ms=5000, max_records=10_000)
            if not batch:
                raise RuntimeError(f"fetch stalled at {received} records")
            received += len(batch[partition])
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    print(f"fetch: {received:,} records from offset 0: {received / elapsed:,.0f} records/s")


async def fill_history(bootstrap: str, target: int, stored: int) -> int:
    """Single-record batches (one send_and_wait at a time per producer) up to `target`."""
    producers = [
        AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        for _ in range(HISTORY_PRODUCERS)
    ]
    for producer in producers:
        await producer.start()
    remaining = target - stored

    async def run(producer: AIOKafkaProducer, count: int) -> None:
        for _ in range(count):
            await producer.send_and_wait(HISTORY_TOPIC, b"h" * 200)

    try:
        share = remaining // len(producers)
        counts = [share] * len(producers)
        counts[0] += remaining - share * len(producers)
        await asyncio.gather(*(run(p, c) for p, c in zip(producers, counts, strict=True)))
    finally:
        for producer in producers:
            await producer.stop()
    return target


async def fetch_latency(bootstrap: str, probes: int) -> tuple[float, float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    partition = TopicPartition(HISTORY_TOPIC, 0)
    timings: list[float] = []
    try:
        consumer.assign([partition])
        end = (await consumer.end_offsets([partition]))[partition]
        for _ in range(probes):
            consumer.seek(partition, end - 1)
            started = time.perf_counter()
            batch = await consumer.getmany(partition, timeout_ms=5000)
            timings.append(time.perf_counter() - started)
            if [r.offset for r in batch.get(partition, [])] != [end - 1]:
                raise RuntimeError(f"expected only offset {end - 1}, got {batch}")
    finally:
        await consumer.stop()
    return statistics.median(timings), percentile(timings, 0.99)


def recovery(batch: bytes, batches: int) -> None:
    with tempfile.TemporaryDirectory(prefix="broker-recovery-") as name:
        directory = Path(name)
        per_segment = DEFAULT_SEGMENT_BYTES // len(batch)
        offset = 0
        while offset < batches:
            count = min(per_segment, batches - offset)
            data = bytearray(batch * count)
            for number in range(count):
                struct.pack_into(">q", data, number * len(batch), offset + number)
            (directory / f"{offset:020d}.log").write_bytes(data)
            offset += count
        timings = []
        for _ in range(2):
            started = time.perf_counter()
            log = PartitionLog(directory, LogConfig(), Syncer())
            timings.append(time.perf_counter() - started)
            segments = len(log.segments)
            assert log.next_offset == batches
            log.close()
    print(
        f"recovery of {batches:,} batches in {segments} segments: from batch headers "
        f"{timings[0]:.2f} s, from .index files {timings[1]:.2f} s "
        f"({timings[0] / timings[1]:.1f}x)"
    )


async def main(arguments: argparse.Namespace) -> None:
    with LocalBroker() as broker:
        bootstrap = broker.bootstrap_servers
        await create_topics(bootstrap)
        await produce(bootstrap, arguments.records, arguments.value_bytes, arguments.in_flight)
        await fetch_all(bootstrap, arguments.records)
        stored = 0
        for target in HISTORY_STEPS:
            started = time.perf_counter()
            previous, stored = stored, await fill_history(bootstrap, target, stored)
            fill_seconds = time.perf_counter() - started
            median, p99 = await fetch_latency(bootstrap, arguments.probes)
            print(
                f"fetch of the last record after {target:,} stored batches: median "
                f"{median * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms "
                f"(filled at {(target - previous) / fill_seconds:,.0f} batches/s)"
            )
        broker.stop()
        started = time.perf_counter()
        broker.start(timeout_seconds=60)
        restart = time.perf_counter() - started
        print(
            f"restart on {arguments.records + stored:,} stored records "
            f"({stored:,} single-record batches among them): accepting connections after "
            f"{restart:.2f} s"
        )
        median, p99 = await fetch_latency(bootstrap, arguments.probes)
        print(f"fetch of the last record after the restart: median {median * 1e3:.2f} ms")
        broker.stop()
        assert broker.data_dir is not None
        first_segment = min((broker.data_dir / "topics" / HISTORY_TOPIC / "0").glob("*.log"))
        with first_segment.open("rb") as file:
            header = file.read(12)
            batch = header + file.read(int.from_bytes(header[8:12], "big"))
    recovery(batch, arguments.recovery_batches)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--value-bytes", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--recovery-batches", type=int, default=2_000_000)
    asyncio.run(main(parser.parse_args()))
