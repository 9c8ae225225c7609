"""Group commit: concurrent asyncio appenders share fsyncs; a failed flush acknowledges nothing."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from core.wal import (
    WalClosedError,
    WalFailedError,
    WalLimitError,
    WalOptions,
    WalOverloadedError,
    WriteAheadLog,
)

TASK_COUNT = 200
RECORDS_PER_TASK = 50


async def test_concurrent_appenders_get_unique_contiguous_seqs_with_few_fsyncs(
    wal_dir: Path,
) -> None:
    fsync_calls: list[int] = []

    def counting_fsync(fd: int) -> None:
        fsync_calls.append(fd)
        os.fsync(fd)

    log = WriteAheadLog.open(
        wal_dir,
        epoch=3,
        options=WalOptions(segment_bytes_max=256 * 1024, record_bytes_max=1024),
        fsync=counting_fsync,
    )
    fsyncs_at_open = len(fsync_calls)

    async def appender(task_index: int) -> list[tuple[int, bytes]]:
        acknowledged: list[tuple[int, bytes]] = []
        for record_index in range(RECORDS_PER_TASK):
            payload = f"task-{task_index:03d}-record-{record_index:02d}".encode()
            (seq,) = await log.append_durable([payload])
            assert log.durable_seq >= seq  # resolved only once its own record is fsynced
            acknowledged.append((seq, payload))
        return acknowledged

    results = await asyncio.gather(*(appender(index) for index in range(TASK_COUNT)))
    await log.aclose()

    acknowledged = {seq: payload for result in results for seq, payload in result}
    record_count = TASK_COUNT * RECORDS_PER_TASK
    assert sorted(acknowledged) == list(range(1, record_count + 1))
    for result in results:  # each task's records are in its own order
        seqs = [seq for seq, _ in result]
        assert seqs == sorted(seqs)

    segment_fsyncs = log.fsync_count
    assert segment_fsyncs == len(fsync_calls) - fsyncs_at_open - log.directory_fsync_count
    assert log.group_commit_count < record_count / 20
    assert segment_fsyncs < record_count / 20  # far fewer fsyncs than records
    print(
        f"{record_count} records, {log.group_commit_count} group commits, "
        f"{segment_fsyncs} segment fsyncs, {log.segment_count} segments"
    )

    with WriteAheadLog.open(wal_dir, epoch=3) as reopened:
        assert reopened.recovery.tail_cut is None
        replayed = {record.seq: record.payload for record in reopened.replay()}
        assert replayed == acknowledged
        assert {record.epoch for record in reopened.replay()} == {3}


async def test_one_call_with_many_records_stays_contiguous(wal_dir: Path) -> None:
    log = WriteAheadLog.open(wal_dir, epoch=1)

    async def batch(task_index: int) -> list[int]:
        return await log.append_durable([bytes([task_index])] * 37)

    seq_lists = await asyncio.gather(*(batch(index) for index in range(40)))
    await log.aclose()
    for seqs in seq_lists:
        assert seqs == list(range(seqs[0], seqs[0] + 37))
    assert sorted(seq for seqs in seq_lists for seq in seqs) == list(range(1, 40 * 37 + 1))


async def test_groups_respect_their_limits(wal_dir: Path) -> None:
    options = WalOptions(record_bytes_max=64, group_records_max=10, group_bytes_max=1024)
    log = WriteAheadLog.open(wal_dir, epoch=1, options=options)
    await asyncio.gather(*(log.append_durable([b"x" * 8] * 3) for _ in range(100)))
    assert log.group_commit_count >= 300 // 9  # at most 3 calls (9 records) per group
    with pytest.raises(WalLimitError, match="group_records_max"):
        await log.append_durable([b"x"] * 11)
    assert await log.append_durable([b"still usable"]) == [301]
    await log.aclose()


async def test_a_full_queue_is_a_named_error(wal_dir: Path) -> None:
    options = WalOptions(
        record_bytes_max=64,
        group_records_max=4,
        group_bytes_max=1024,
        pending_records_max=8,
        pending_bytes_max=4096,
    )
    log = WriteAheadLog.open(wal_dir, epoch=1, options=options)
    # nothing can flush until the event loop yields, so the queue fills synchronously
    tasks = [asyncio.ensure_future(log.append_durable([b"a"] * 4)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(WalOverloadedError):
        await log.append_durable([b"b"])
    assert len(await asyncio.gather(*tasks)) == 2
    await log.aclose()


async def test_a_failed_fsync_fails_every_caller_of_the_group_and_refuses_later_appends(
    wal_dir: Path,
) -> None:
    gate = threading.Event()
    failing = threading.Event()

    def gated_fsync(fd: int) -> None:
        if failing.is_set():
            gate.wait(timeout=5)
            raise OSError(5, "injected EIO")
        os.fsync(fd)

    log = WriteAheadLog.open(wal_dir, epoch=1, fsync=gated_fsync)
    assert await log.append_durable([b"durable"]) == [1]
    failing.set()
    first = asyncio.ensure_future(log.append_durable([b"first-group"]))
    await asyncio.sleep(0.05)  # the first group is now blocked inside fsync
    waiting = [asyncio.ensure_future(log.append_durable([b"queued"])) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.gather(first, *waiting, return_exceptions=True)
    assert all(isinstance(outcome, WalFailedError) for outcome in outcomes), outcomes
    assert log.durable_seq == 1
    with pytest.raises(WalFailedError):
        await log.append_durable([b"later"])
    with pytest.raises(WalFailedError):
        log.append([b"later"])
    await log.aclose()
    with pytest.raises(WalClosedError):
        await log.append_durable([b"closed"])

    with WriteAheadLog.open(wal_dir, epoch=1) as reopened:
        # the failed group's bytes may or may not be on disk: only seq 1 was acknowledged
        payloads = [record.payload for record in reopened.replay()]
        assert payloads[0] == b"durable"
        assert set(payloads[1:]) <= {b"first-group"}


async def test_the_event_loop_is_not_blocked_during_fsync(wal_dir: Path) -> None:
    release = threading.Event()

    slow = threading.Event()

    def slow_fsync(fd: int) -> None:
        if slow.is_set():
            release.wait(timeout=5)
        os.fsync(fd)

    log = WriteAheadLog.open(wal_dir, epoch=1, fsync=slow_fsync)
    slow.set()
    append = asyncio.ensure_future(log.append_durable([b"slow"]))
    ticks = 0
    for _ in range(10):
        await asyncio.sleep(0.005)
        ticks += 1
    assert not append.done()
    assert ticks == 10
    release.set()
    assert await append == [1]
    await log.aclose()
