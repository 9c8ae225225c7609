"""Journal recovery with real files: events the journal lost are regenerated from the WAL;
a journal behind the snapshot is refused; published segments are removed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.outbox import (
    JournalOptions,
    OutboxJournal,
    OutboxPublisher,
    OutboxRecoveryError,
    PublisherOptions,
    read_cursor,
)
from core.sequencer import Sequencer, SequencerOptions
from core.sequencer.testing import StepClock
from core.wal import WalOptions
from infra.local.kafka_broker import LocalBroker
from tests.integration.core.outbox.outbox_support import (
    SHARD_ID,
    assert_published_exactly,
    running_shard,
    setup_commands,
    trading_commands,
)

NO_AUTO_SNAPSHOT = SequencerOptions(
    snapshot_every_commands=0, remove_wal_segments_after_snapshot=False
)


def journal_segments(shard_directory: Path) -> list[Path]:
    return sorted((shard_directory / "outbox").glob("wal-*.log"))


def cut_journal_tail(shard_directory: Path, keep_fraction: float) -> None:
    """What a power loss does to a journal whose last writes were never fsynced."""
    last = journal_segments(shard_directory)[-1]
    os.truncate(last, int(last.stat().st_size * keep_fraction))


async def run_commands(shard_directory: Path, rounds: range, *, snapshot: bool = False) -> int:
    journal = OutboxJournal(shard_id=SHARD_ID)
    sequencer = Sequencer.open(
        shard_directory, clock=StepClock(), options=NO_AUTO_SNAPSHOT, event_sink=journal
    )
    try:
        if sequencer.engine_seq == 0:
            await sequencer.submit(setup_commands())
        for round_index in rounds:
            await sequencer.submit(trading_commands(round_index))
        if snapshot:
            await sequencer.snapshot()
        return sequencer.engine_seq
    finally:
        await sequencer.aclose()
        await journal.aclose()


async def test_a_lost_journal_tail_is_regenerated_from_the_wal(
    tmp_path: Path, kafka_broker: LocalBroker
) -> None:
    engine_seq = await run_commands(tmp_path, range(30))
    cut_journal_tail(tmp_path, keep_fraction=0.5)
    journal = OutboxJournal(shard_id=SHARD_ID)
    sequencer = Sequencer.open(
        tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT, event_sink=journal
    )
    publisher = OutboxPublisher(
        journal, PublisherOptions(bootstrap_servers=kafka_broker.bootstrap_servers)
    )
    try:
        recovery = journal.recovery
        assert recovery is not None
        assert recovery.tail_cut is not None
        assert 0 < recovery.durable_seq < engine_seq
        assert journal.accepted_seq == engine_seq  # the replay handed the rest in again
        await journal.flush()
        assert journal.durable_seq == engine_seq
        publisher.start()
        await publisher.wait_published(engine_seq, timeout_seconds=20)
    finally:
        await sequencer.aclose()
        await publisher.stop()
        await journal.aclose()
    await assert_published_exactly(kafka_broker.bootstrap_servers, tmp_path)


async def test_a_journal_behind_the_snapshot_is_refused(tmp_path: Path) -> None:
    await run_commands(tmp_path, range(30), snapshot=True)
    cut_journal_tail(tmp_path, keep_fraction=0.5)
    with pytest.raises(OutboxRecoveryError, match="before the snapshot"):
        Sequencer.open(
            tmp_path,
            clock=StepClock(),
            options=NO_AUTO_SNAPSHOT,
            event_sink=OutboxJournal(shard_id=SHARD_ID),
        )


async def test_snapshot_then_restart_continues_the_journal(tmp_path: Path) -> None:
    first_seq = await run_commands(tmp_path, range(10), snapshot=True)
    engine_seq = await run_commands(tmp_path, range(10, 20))
    journal = OutboxJournal(shard_id=SHARD_ID)
    sequencer = Sequencer.open(
        tmp_path, clock=StepClock(), options=NO_AUTO_SNAPSHOT, event_sink=journal
    )
    try:
        assert sequencer.recovery.snapshot_seq == first_seq
        assert journal.durable_seq == engine_seq  # nothing lost, nothing to regenerate
        assert journal.first_seq == 1
    finally:
        await sequencer.aclose()
        await journal.aclose()


async def test_published_segments_are_removed(tmp_path: Path, kafka_broker: LocalBroker) -> None:
    small_segments = JournalOptions(
        wal_options=WalOptions(segment_bytes_max=8 * 1024, record_bytes_max=4 * 1024)
    )
    async with running_shard(
        tmp_path,
        kafka_broker.bootstrap_servers,
        options=NO_AUTO_SNAPSHOT,
        journal_options=small_segments,
    ) as shard:
        await shard.sequencer.submit(setup_commands())
        for round_index in range(60):
            await shard.sequencer.submit(trading_commands(round_index))
        await shard.publisher.wait_published(shard.sequencer.engine_seq, timeout_seconds=20)
        await shard.publisher.stop()
        assert shard.publisher.segments_removed_count > 0
        assert 1 < shard.journal.first_seq <= shard.publisher.cursor_seq + 1
        assert len(journal_segments(tmp_path)) == shard.journal.segment_count
    engine_seq = shard.sequencer.engine_seq
    assert read_cursor(tmp_path / "outbox" / "publish.cursor") == engine_seq
    # A restart starts from the cursor, past the removed segments.
    async with running_shard(
        tmp_path,
        kafka_broker.bootstrap_servers,
        options=NO_AUTO_SNAPSHOT,
        journal_options=small_segments,
    ) as shard:
        assert shard.publisher.published_seq == engine_seq
        await shard.sequencer.submit(trading_commands(60))
        await shard.publisher.wait_published(shard.sequencer.engine_seq, timeout_seconds=20)
    await assert_published_exactly(kafka_broker.bootstrap_servers, tmp_path)
