"""Crash test with a real process: SIGKILL a group-committing writer, every ack must survive.

The kill delays come from a seeded RNG; the seed is printed (set WAL_CRASH_SEED to replay).
Repeated runs reopen the same directory, so later runs also recover earlier torn tails.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from core.wal import WriteAheadLog
from tests.support.child_process import run_until_killed

CHILD_SCRIPT = Path(__file__).with_name("wal_crash_child.py")
KILL_COUNT = 5
KILL_DELAY_SECONDS_MIN = 0.05
KILL_DELAY_SECONDS_MAX = 0.8
READY_TIMEOUT_SECONDS = 10.0


def run_child_until_killed(directory: Path, kill_delay_seconds: float) -> dict[int, bytes]:
    """Start the writer, SIGKILL it `kill_delay_seconds` after it is ready; return its acks."""
    lines = run_until_killed(
        CHILD_SCRIPT,
        str(directory),
        kill_delay_seconds=kill_delay_seconds,
        ready_timeout_seconds=READY_TIMEOUT_SECONDS,
    )
    acknowledged: dict[int, bytes] = {}
    for line in lines:
        seq_text, payload = line.rstrip(b"\n").split(b" ", 1)
        acknowledged[int(seq_text)] = payload
    return acknowledged


def test_every_acknowledged_record_survives_sigkill(tmp_path: Path) -> None:
    seed = int(os.environ.get("WAL_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    print(f"WAL_CRASH_SEED={seed}")
    rng = random.Random(seed)
    directory = tmp_path / "wal"
    all_acknowledged: dict[int, bytes] = {}
    for run in range(KILL_COUNT):
        kill_delay_seconds = rng.uniform(KILL_DELAY_SECONDS_MIN, KILL_DELAY_SECONDS_MAX)
        acknowledged = run_child_until_killed(directory, kill_delay_seconds)
        assert acknowledged, f"run {run}: nothing acknowledged in {kill_delay_seconds:.3f} s"
        all_acknowledged.update(acknowledged)
        with WriteAheadLog.open(directory, epoch=1) as log:
            on_disk = {record.seq: record.payload for record in log.replay()}
            cut = log.recovery.tail_cut
        missing = [seq for seq, payload in all_acknowledged.items() if on_disk.get(seq) != payload]
        assert not missing, f"seed {seed} run {run}: acknowledged seqs lost: {missing[:10]}"
        assert sorted(on_disk) == list(range(1, len(on_disk) + 1))
        print(
            f"run {run}: killed after {kill_delay_seconds:.3f} s, {len(acknowledged)} acked, "
            f"{len(on_disk)} on disk, tail cut: {cut.reason.value if cut else None}"
        )
