"""Outbox against the real broker: everything the WAL implies reaches both topics, in order;
a restarted outbox resumes from its durable cursor and loses nothing."""

from __future__ import annotations

from pathlib import Path

from common.topics import TRADE_EVENTS_TOPIC
from core.outbox import OutboxJournal, OutboxPublisher, PublisherOptions, TopicSpec
from core.sequencer import Sequencer, SequencerOptions
from core.sequencer.testing import StepClock
from infra.local.kafka_broker import LocalBroker
from tests.integration.core.outbox.outbox_support import (
    SHARD_ID,
    assert_published_exactly,
    running_shard,
    setup_commands,
    trading_commands,
)

NO_AUTO_SNAPSHOT = SequencerOptions(snapshot_every_commands=0)


def publisher_options(broker: LocalBroker, *, trade_partitions: int = 1) -> PublisherOptions:
    return PublisherOptions(
        bootstrap_servers=broker.bootstrap_servers,
        trade_events_topic=TopicSpec(name=TRADE_EVENTS_TOPIC, partitions=trade_partitions),
        request_timeout_ms=2_000,
        backoff_seconds_max=0.2,
    )


async def test_every_event_reaches_both_topics_in_order(
    tmp_path: Path, kafka_broker: LocalBroker
) -> None:
    journal = OutboxJournal(shard_id=SHARD_ID)
    sequencer = Sequencer.open(
        tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT, event_sink=journal
    )
    publisher = OutboxPublisher(journal, publisher_options(kafka_broker, trade_partitions=2))
    publisher.start()
    try:
        await sequencer.submit(setup_commands())
        for round_index in range(50):
            await sequencer.submit(trading_commands(round_index))
        await publisher.wait_published(sequencer.engine_seq, timeout_seconds=20)
        assert publisher.lag_records == 0
        assert publisher.published_seq == journal.durable_seq == sequencer.engine_seq
    finally:
        await sequencer.aclose()
        await publisher.stop()
        await journal.aclose()
    assert publisher.cursor_seq == publisher.published_seq
    consumed = await assert_published_exactly(
        kafka_broker.bootstrap_servers, tmp_path, trade_partitions=2
    )
    assert {item.envelope.epoch for item in consumed} == {sequencer.epoch}
    # The resume position (docs/adr/0017): after the last acknowledged record, nothing resent.
    position = publisher.position
    assert position is not None
    assert (position.topic, position.partition) == ("core.events.v1", 0)
    assert position.engine_seq == publisher.published_seq
    assert position.next_offset == len(consumed)


async def test_a_restarted_outbox_resumes_from_its_cursor(
    tmp_path: Path, kafka_broker: LocalBroker
) -> None:
    servers = kafka_broker.bootstrap_servers
    async with running_shard(tmp_path, servers, options=NO_AUTO_SNAPSHOT) as shard:
        await shard.sequencer.submit(setup_commands())
        for round_index in range(20):
            await shard.sequencer.submit(trading_commands(round_index))
        await shard.publisher.wait_published(shard.sequencer.engine_seq, timeout_seconds=20)
        await shard.publisher.stop()
        cursor_seq = shard.publisher.cursor_seq
        assert cursor_seq == shard.sequencer.engine_seq
        for round_index in range(20, 40):  # journaled while nobody publishes
            await shard.sequencer.submit(trading_commands(round_index))

    async with running_shard(tmp_path, servers, options=NO_AUTO_SNAPSHOT) as shard:
        assert shard.publisher.published_seq == cursor_seq
        for round_index in range(40, 60):
            await shard.sequencer.submit(trading_commands(round_index))
        await shard.publisher.wait_published(shard.sequencer.engine_seq, timeout_seconds=20)
        assert shard.publisher.file_records_count > 0  # the backlog came back from the files
    consumed = await assert_published_exactly(servers, tmp_path)
    assert len(consumed) == len({item.envelope.event_id for item in consumed})  # clean stop
