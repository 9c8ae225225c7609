"""Child process for test_outbox_crash.py: sequencer + outbox under load until SIGKILLed.

Usage: python outbox_crash_child.py SHARD_DIRECTORY BOOTSTRAP_SERVERS RUN_INDEX
Prints "ready <engine_seq>" once recovered, then one line "<seq>" per command, only after
`submit` returned it (acknowledged: every printed seq's events must reach the broker).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from core.outbox import JournalOptions, OutboxJournal, OutboxPublisher, PublisherOptions
from core.sequencer import Sequencer, SequencerOptions
from core.wal import WalOptions
from tests.integration.core.outbox.outbox_support import (
    SHARD_ID,
    setup_commands,
    trading_commands,
)

WORKER_COUNT = 8
ROUNDS_PER_RUN = 1_000_000
ROUNDS_PER_WORKER = 100_000

# Small segments and frequent snapshots so kills land during rolls, snapshots (and their
# journal barrier) and cursor writes; the WAL keeps every segment so the parent can replay
# it from seq 1.
SEQUENCER_OPTIONS = SequencerOptions(
    snapshot_every_commands=500,
    remove_wal_segments_after_snapshot=False,
    wal_options=WalOptions(segment_bytes_max=64 * 1024, record_bytes_max=1024),
)
JOURNAL_OPTIONS = JournalOptions(
    wal_options=WalOptions(segment_bytes_max=64 * 1024, record_bytes_max=16 * 1024)
)


async def worker(sequencer: Sequencer, run_index: int, worker_index: int) -> None:
    round_index = run_index * ROUNDS_PER_RUN + worker_index * ROUNDS_PER_WORKER
    while True:
        results = await sequencer.submit(trading_commands(round_index))
        sys.stdout.write("".join(f"{result.outcome.engine_seq}\n" for result in results))
        sys.stdout.flush()
        round_index += 1


async def main(directory: Path, bootstrap_servers: str, run_index: int) -> None:
    journal = OutboxJournal(shard_id=SHARD_ID, options=JOURNAL_OPTIONS)
    sequencer = Sequencer.open(
        directory, clock=time.time_ns, options=SEQUENCER_OPTIONS, event_sink=journal
    )
    publisher = OutboxPublisher(
        journal,
        PublisherOptions(bootstrap_servers=bootstrap_servers, round_records_max=256),
    )
    publisher.start()
    if not sequencer.engine.assets():
        await sequencer.submit(setup_commands())
    sys.stdout.write(f"ready {sequencer.engine_seq}\n")
    sys.stdout.flush()
    await asyncio.gather(*(worker(sequencer, run_index, index) for index in range(WORKER_COUNT)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
