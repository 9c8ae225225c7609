"""The broker goes away mid-stream (stopped and restarted; frozen with SIGSTOP): submits
never wait for it, the publisher retries from its cursor, nothing is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from core.outbox import OutboxJournal, OutboxPublisher, PublisherOptions
from core.sequencer import Sequencer, SequencerOptions
from core.sequencer.testing import StepClock
from infra.local.kafka_broker import LocalBroker
from tests.integration.core.outbox.outbox_support import (
    SHARD_ID,
    assert_published_exactly,
    setup_commands,
    trading_commands,
)

OUTAGE_SECONDS = 1.5
# A submit is a WAL fsync away; the broker never enters it. One that waited for the broker
# would wait out the outage: the first submit after it began, the whole OUTAGE_SECONDS. The
# bound leaves room for fsync and snapshot jitter on a loaded 2-core machine (0.64 s seen).
SUBMIT_SECONDS_MAX = 1.0


async def publish_through_an_outage(
    shard_directory: Path,
    broker: LocalBroker,
    *,
    outage_begins: Callable[[], None],
    outage_ends: Callable[[], None],
) -> OutboxPublisher:
    journal = OutboxJournal(shard_id=SHARD_ID)
    sequencer = Sequencer.open(
        shard_directory,
        clock=StepClock(),
        options=SequencerOptions(
            snapshot_every_commands=200, remove_wal_segments_after_snapshot=False
        ),
        event_sink=journal,
    )
    publisher = OutboxPublisher(
        journal,
        PublisherOptions(
            bootstrap_servers=broker.bootstrap_servers,
            request_timeout_ms=1_000,
            backoff_seconds_max=0.2,
            round_records_max=64,
        ),
    )
    publisher.start()
    submit_seconds_max = 0.0
    round_index = 0

    async def submit_for(seconds: float) -> None:
        nonlocal submit_seconds_max, round_index
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            await sequencer.submit(trading_commands(round_index))
            submit_seconds_max = max(submit_seconds_max, time.monotonic() - started)
            round_index += 1
            await asyncio.sleep(0.002)

    try:
        await sequencer.submit(setup_commands())
        await submit_for(0.5)
        await publisher.wait_published(sequencer.engine_seq, timeout_seconds=10)
        published_before = publisher.published_seq
        outage_begins()
        seq_at_outage = sequencer.engine_seq
        await submit_for(OUTAGE_SECONDS)
        assert sequencer.engine_seq > seq_at_outage + 100  # the core kept going
        assert publisher.published_seq < sequencer.engine_seq  # while the broker was away
        outage_ends()
        await submit_for(0.5)
        await publisher.wait_published(sequencer.engine_seq, timeout_seconds=30)
        assert submit_seconds_max < SUBMIT_SECONDS_MAX, submit_seconds_max
        assert publisher.send_failures_count > 0, "the outage was never noticed"
        assert publisher.producer_starts_count >= 2
        assert published_before > 0
        assert sequencer.snapshot_error is None  # snapshots went on: the journal was durable
        assert sequencer.snapshot_seq > seq_at_outage
    finally:
        await sequencer.aclose()
        await publisher.stop()
        await journal.aclose()
    return publisher


async def test_broker_stopped_and_restarted_mid_stream_loses_nothing(
    tmp_path: Path, durable_kafka_broker: LocalBroker
) -> None:
    await publish_through_an_outage(
        tmp_path,
        durable_kafka_broker,
        outage_begins=durable_kafka_broker.stop,
        outage_ends=durable_kafka_broker.start,
    )
    await assert_published_exactly(durable_kafka_broker.bootstrap_servers, tmp_path)


async def test_broker_frozen_mid_stream_loses_nothing(
    tmp_path: Path, kafka_broker: LocalBroker
) -> None:
    process = kafka_broker._process
    assert process is not None

    def signal_broker(signal_number: int) -> Callable[[], None]:
        return lambda: os.kill(process.pid, signal_number)

    await publish_through_an_outage(
        tmp_path,
        kafka_broker,
        outage_begins=signal_broker(signal.SIGSTOP),
        outage_ends=signal_broker(signal.SIGCONT),
    )
    await assert_published_exactly(kafka_broker.bootstrap_servers, tmp_path)
