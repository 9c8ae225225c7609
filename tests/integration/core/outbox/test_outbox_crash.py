"""SIGKILL a process running sequencer + outbox under load, restart: every acknowledged
command's events reach the broker (and exactly what the WAL implies, in engine order).

The child (outbox_crash_child.py) prints each seq only after `submit` returned it. The
parent kills it at seeded random moments (seed printed; OUTBOX_CRASH_SEED replays), then
recovers the shard in-process, lets the publisher catch up and reads both topics back.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from infra.local.kafka_broker import LocalBroker
from tests.integration.core.outbox.outbox_crash_child import JOURNAL_OPTIONS, SEQUENCER_OPTIONS
from tests.integration.core.outbox.outbox_support import assert_published_exactly, running_shard
from tests.support.child_process import run_until_killed

CHILD_SCRIPT = Path(__file__).with_name("outbox_crash_child.py")
KILL_COUNT = 3
KILL_DELAY_SECONDS_MIN = 0.2
KILL_DELAY_SECONDS_MAX = 1.0
READY_TIMEOUT_SECONDS = 30.0


async def test_every_acknowledged_command_is_published_after_sigkill(
    tmp_path: Path, kafka_broker: LocalBroker
) -> None:
    seed = int(os.environ.get("OUTBOX_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    print(f"OUTBOX_CRASH_SEED={seed}")
    rng = random.Random(seed)
    directory = tmp_path / "shard"
    acknowledged: set[int] = set()
    for run_index in range(KILL_COUNT):
        lines = run_until_killed(
            CHILD_SCRIPT,
            str(directory),
            kafka_broker.bootstrap_servers,
            str(run_index),
            kill_delay_seconds=rng.uniform(KILL_DELAY_SECONDS_MIN, KILL_DELAY_SECONDS_MAX),
            ready_timeout_seconds=READY_TIMEOUT_SECONDS,
        )
        acknowledged.update(int(line) for line in lines)
    assert acknowledged, f"seed {seed}: no run acknowledged anything"

    async with running_shard(
        directory,
        kafka_broker.bootstrap_servers,
        options=SEQUENCER_OPTIONS,
        journal_options=JOURNAL_OPTIONS,
    ) as shard:
        assert max(acknowledged) <= shard.sequencer.engine_seq
        await shard.publisher.wait_published(shard.sequencer.engine_seq, timeout_seconds=30)
        recovery = shard.journal.recovery
        print(
            f"{len(acknowledged)} acknowledged, engine_seq {shard.sequencer.engine_seq}, "
            f"journal regenerated after {recovery.durable_seq if recovery else 0}, "
            f"publisher resumed at cursor {shard.publisher.cursor_seq}"
        )
    consumed = await assert_published_exactly(kafka_broker.bootstrap_servers, directory)
    published_seqs = {item.envelope.engine_seq for item in consumed}
    missing = sorted(acknowledged - published_seqs)
    assert not missing, f"seed {seed}: acknowledged but never published: {missing[:10]}"
