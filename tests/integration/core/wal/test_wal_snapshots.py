"""Snapshot store on real files: atomic write, verification, fallback, retention, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.wal import (
    EpochFence,
    FencedError,
    SnapshotCorruptionError,
    SnapshotStore,
    SnapshotTooLargeError,
    acquire_epoch,
)
from core.wal.snapshots import SNAPSHOT_HEADER_BYTES, snapshot_name


def state_at(engine_seq: int) -> bytes:
    return f"engine state at {engine_seq}".encode() * 10


def test_write_then_latest_valid(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    assert store.latest_valid().snapshot is None
    path = store.write(100, state_at(100))
    assert path.name == "snapshot-00000000000000000100.bin"
    assert path.stat().st_size == SNAPSHOT_HEADER_BYTES + len(state_at(100))
    assert not list(tmp_path.glob("*.tmp"))
    store.write(250, state_at(250))
    loaded = SnapshotStore(tmp_path).latest_valid()
    assert loaded.corrupt == ()
    assert loaded.snapshot is not None
    assert loaded.snapshot.engine_seq == 250
    assert loaded.snapshot.state_bytes == state_at(250)


@pytest.mark.parametrize("damage", ["body_bit_flip", "header_seq", "truncated", "empty"])
def test_a_corrupt_newest_snapshot_is_skipped_for_the_previous_one(
    tmp_path: Path, damage: str
) -> None:
    store = SnapshotStore(tmp_path)
    store.write(10, state_at(10))
    newest = store.write(20, state_at(20))
    data = bytearray(newest.read_bytes())
    if damage == "body_bit_flip":
        data[-1] ^= 0x01
    elif damage == "header_seq":
        data[16] ^= 0x01
    elif damage == "truncated":
        del data[-5:]
    else:
        data.clear()
    newest.write_bytes(bytes(data))
    loaded = store.latest_valid()
    assert loaded.snapshot is not None
    assert loaded.snapshot.engine_seq == 10
    assert loaded.snapshot.state_bytes == state_at(10)
    assert [corrupt.path for corrupt in loaded.corrupt] == [newest]
    with pytest.raises(SnapshotCorruptionError):
        store.load(20)


def test_only_corrupt_snapshots_means_none(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    path = store.write(5, state_at(5))
    path.write_bytes(b"not a snapshot at all, but long enough to have a header..........")
    loaded = store.latest_valid()
    assert loaded.snapshot is None
    assert len(loaded.corrupt) == 1


def test_retention_keeps_the_newest_n(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep_count=3)
    for engine_seq in (1, 5, 9, 13, 17):
        store.write(engine_seq, state_at(engine_seq))
    assert store.engine_seqs() == [9, 13, 17]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        snapshot_name(9),
        snapshot_name(13),
        snapshot_name(17),
    ]


def test_a_crashed_write_leaves_no_partial_snapshot(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.write(1, state_at(1))
    # what a crash between writing the temp file and renaming it leaves behind
    (tmp_path / (snapshot_name(2) + ".tmp")).write_bytes(b"half a snap")
    reopened = SnapshotStore(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))
    loaded = reopened.latest_valid()
    assert loaded.snapshot is not None
    assert loaded.snapshot.engine_seq == 1


def test_size_limit(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, state_bytes_max=100)
    with pytest.raises(SnapshotTooLargeError):
        store.write(1, b"x" * 101)
    store.write(1, b"x" * 100)
    oversized = tmp_path / snapshot_name(2)
    oversized.write_bytes(b"\x00" * (SNAPSHOT_HEADER_BYTES + 101))
    loaded = store.latest_valid()
    assert loaded.snapshot is not None
    assert loaded.snapshot.engine_seq == 1
    assert "state_bytes_max" in loaded.corrupt[0].reason


def test_a_fenced_instance_cannot_publish_a_snapshot(tmp_path: Path) -> None:
    epoch_old = acquire_epoch(tmp_path)
    fence = EpochFence(tmp_path, epoch_old)
    store = SnapshotStore(tmp_path, fence=fence)
    store.write(1, state_at(1))
    acquire_epoch(tmp_path)
    with pytest.raises(FencedError):
        store.write(2, state_at(2))
    assert store.engine_seqs() == [1]
    assert not list(tmp_path.glob("*.tmp"))
    fence.close()
