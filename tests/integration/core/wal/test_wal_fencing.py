"""Epoch fencing: a newer instance fences out the older one, across processes too."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.wal import (
    EpochFence,
    FenceCorruptionError,
    FencedError,
    WriteAheadLog,
    acquire_epoch,
    current_epoch,
)
from core.wal.fencing import FENCE_EPOCH_NAME
from tests.paths import REPO_ROOT


def test_epochs_increase_and_survive_reopen(wal_dir: Path) -> None:
    assert current_epoch(wal_dir) == 0
    assert [acquire_epoch(wal_dir) for _ in range(3)] == [1, 2, 3]
    assert current_epoch(wal_dir) == 3


async def test_older_instance_cannot_append_after_takeover(wal_dir: Path) -> None:
    epoch_a = acquire_epoch(wal_dir)
    fence_a = EpochFence(wal_dir, epoch_a)
    log_a = WriteAheadLog.open(wal_dir, epoch=epoch_a, fence=fence_a)
    assert await log_a.append_durable([b"a-1", b"a-2"]) == [1, 2]

    epoch_b = acquire_epoch(wal_dir)
    assert epoch_b == epoch_a + 1
    fence_b = EpochFence(wal_dir, epoch_b)
    log_b = WriteAheadLog.open(wal_dir, epoch=epoch_b, fence=fence_b)
    assert log_b.recovery.last_seq == 2

    size_before = sum(path.stat().st_size for path in wal_dir.glob("wal-*.log"))
    results = await asyncio.gather(
        *(log_a.append_durable([b"a-late"]) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(result, FencedError) for result in results), results
    with pytest.raises(FencedError):
        await log_a.append_durable([b"a-later"])
    with pytest.raises(FencedError):
        log_a.append([b"a-later"])
    size_after = sum(path.stat().st_size for path in wal_dir.glob("wal-*.log"))
    assert size_after == size_before  # nothing of A landed on disk

    assert await log_b.append_durable([b"b-1"]) == [3]
    await log_a.aclose()
    await log_b.aclose()
    assert [tuple(record) for record in log_b.replay()] == [
        (1, epoch_a, b"a-1"),
        (2, epoch_a, b"a-2"),
        (3, epoch_b, b"b-1"),
    ]
    fence_a.close()
    fence_b.close()


def test_opening_with_a_stale_epoch_is_fenced(wal_dir: Path) -> None:
    epoch_old = acquire_epoch(wal_dir)
    acquire_epoch(wal_dir)
    fence = EpochFence(wal_dir, epoch_old)
    with pytest.raises(FencedError):
        WriteAheadLog.open(wal_dir, epoch=epoch_old, fence=fence)
    fence.close()


def test_a_log_written_by_a_newer_epoch_refuses_an_older_writer(wal_dir: Path) -> None:
    with WriteAheadLog.open(wal_dir, epoch=5) as log:
        log.append([b"x"])
        log.sync()
    with pytest.raises(FencedError, match="newer than"):
        WriteAheadLog.open(wal_dir, epoch=4)


def test_sync_of_already_written_records_does_not_block_takeover(wal_dir: Path) -> None:
    """The sync API writes under the fence; its later fsync only hardens bytes already written."""
    epoch_a = acquire_epoch(wal_dir)
    fence_a = EpochFence(wal_dir, epoch_a)
    in_flush = threading.Event()
    release = threading.Event()

    slow = threading.Event()

    def slow_fsync(fd: int) -> None:
        if slow.is_set():
            in_flush.set()
            release.wait(timeout=5)

    log_a = WriteAheadLog.open(wal_dir, epoch=epoch_a, fence=fence_a, fsync=slow_fsync)
    slow.set()
    writer = threading.Thread(target=lambda: log_a.sync() if log_a.append([b"a"]) else None)
    writer.start()
    assert in_flush.wait(timeout=5)  # append() under the fence is done; sync() is outside it
    acquired: list[int] = []
    taker = threading.Thread(target=lambda: acquired.append(acquire_epoch(wal_dir)))
    taker.start()
    taker.join(timeout=5)
    assert acquired == [epoch_a + 1]
    release.set()
    writer.join(timeout=5)
    log_a.close()
    fence_a.close()


def test_group_commit_holds_the_fence_until_fsync_completes(wal_dir: Path) -> None:
    epoch_a = acquire_epoch(wal_dir)
    fence_a = EpochFence(wal_dir, epoch_a)
    in_fsync = threading.Event()
    release = threading.Event()
    slow = threading.Event()

    def slow_fsync(fd: int) -> None:
        if slow.is_set():
            in_fsync.set()
            release.wait(timeout=5)

    log_a = WriteAheadLog.open(wal_dir, epoch=epoch_a, fence=fence_a, fsync=slow_fsync)
    slow.set()
    flusher = threading.Thread(target=lambda: asyncio.run(log_a.append_durable([b"a"])))
    flusher.start()
    assert in_fsync.wait(timeout=5)
    acquired: list[int] = []
    taker = threading.Thread(target=lambda: acquired.append(acquire_epoch(wal_dir)))
    taker.start()
    time.sleep(0.1)
    assert acquired == []  # blocked: the group commit still holds the shared fence lock
    release.set()
    taker.join(timeout=5)
    flusher.join(timeout=5)
    assert acquired == [epoch_a + 1]
    log_a.close()
    fence_a.close()


RACER = """
import sys
from pathlib import Path
from core.wal import acquire_epoch
directory = Path(sys.argv[1])
print(" ".join(str(acquire_epoch(directory)) for _ in range(int(sys.argv[2]))))
"""


def test_racing_processes_get_distinct_epochs(wal_dir: Path) -> None:
    process_count = 6
    acquisitions_per_process = 20
    children = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(wal_dir), str(acquisitions_per_process)],
            stdout=subprocess.PIPE,
            cwd=REPO_ROOT,
        )
        for _ in range(process_count)
    ]
    epochs: list[int] = []
    for child in children:
        stdout, _ = child.communicate(timeout=30)
        assert child.returncode == 0
        epochs.extend(int(text) for text in stdout.split())
    total = process_count * acquisitions_per_process
    assert sorted(epochs) == list(range(1, total + 1))
    assert current_epoch(wal_dir) == total


def test_a_damaged_fence_file_is_an_error(wal_dir: Path) -> None:
    acquire_epoch(wal_dir)
    (wal_dir / FENCE_EPOCH_NAME).write_bytes(b"garbage")
    with pytest.raises(FenceCorruptionError):
        current_epoch(wal_dir)
    with pytest.raises(FenceCorruptionError):
        acquire_epoch(wal_dir)
