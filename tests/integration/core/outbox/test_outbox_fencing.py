"""Fencing: once a newer instance took the shard, the older one can neither journal nor
publish, and the new one republishes the backlog under its own epoch."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.outbox import OutboxJournal, OutboxPublisher, PublisherOptions
from core.sequencer import Sequencer, SequencerOptions
from core.sequencer.testing import StepClock
from core.wal import FencedError
from infra.local.kafka_broker import LocalBroker
from tests.integration.core.outbox.outbox_support import (
    SHARD_ID,
    assert_published_exactly,
    setup_commands,
    trading_commands,
    wait_until,
)

NO_AUTO_SNAPSHOT = SequencerOptions(snapshot_every_commands=0)


async def test_a_fenced_outbox_publishes_nothing_more(
    tmp_path: Path, kafka_broker: LocalBroker
) -> None:
    options = PublisherOptions(bootstrap_servers=kafka_broker.bootstrap_servers)
    old_journal = OutboxJournal(shard_id=SHARD_ID)
    old = Sequencer.open(
        tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT, event_sink=old_journal
    )
    old_publisher = OutboxPublisher(old_journal, options)
    old_publisher.start()
    await old.submit(setup_commands())
    for round_index in range(10):
        await old.submit(trading_commands(round_index))
    await old_publisher.wait_published(old.engine_seq, timeout_seconds=20)
    await old_publisher.stop()
    published_by_old = old_publisher.cursor_seq
    for round_index in range(10, 20):  # journaled by the old instance, never published by it
        await old.submit(trading_commands(round_index))
    await old_journal.flush()
    backlog_seq = old.engine_seq

    new_journal = OutboxJournal(shard_id=SHARD_ID)
    new = Sequencer.open(
        tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT, event_sink=new_journal
    )
    try:
        assert new.epoch > old.epoch
        with pytest.raises(FencedError):
            await old.submit(trading_commands(99))
        with pytest.raises(FencedError):
            await old.snapshot()
        late_publisher = OutboxPublisher(old_journal, options)
        late_publisher.start()
        await wait_until(lambda: not late_publisher.running, timeout_seconds=10)
        assert late_publisher.fenced
        assert late_publisher.published_seq == published_by_old
        await late_publisher.stop()

        new_publisher = OutboxPublisher(new_journal, options)
        new_publisher.start()
        for round_index in range(20, 30):
            await new.submit(trading_commands(round_index))
        await new_publisher.wait_published(new.engine_seq, timeout_seconds=20)
        await new_publisher.stop()
    finally:
        old.close()
        old_journal.close()
        await new.aclose()
        await new_journal.aclose()
    consumed = await assert_published_exactly(kafka_broker.bootstrap_servers, tmp_path)
    for item in consumed:
        expected_epoch = old.epoch if item.envelope.engine_seq <= published_by_old else new.epoch
        assert item.envelope.epoch == expected_epoch, item.envelope.event_id
    assert any(
        published_by_old < item.envelope.engine_seq <= backlog_seq for item in consumed
    )  # the old epoch's backlog went out, stamped with the new epoch
