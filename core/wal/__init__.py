"""Durability layer of the trading core: write-ahead log, epoch fencing, snapshot store.

See core/wal/README.md for the on-disk formats, recovery rules and guarantees.
"""

from __future__ import annotations

from core.wal.errors import (
    FenceCorruptionError,
    FencedError,
    RecordTooLargeError,
    SnapshotCorruptionError,
    SnapshotError,
    SnapshotTooLargeError,
    WalClosedError,
    WalCorruptionError,
    WalError,
    WalFailedError,
    WalLimitError,
    WalOverloadedError,
    WalSeqUnavailableError,
)
from core.wal.fencing import EpochFence, acquire_epoch, current_epoch
from core.wal.log import RecoveryReport, TailCut, WalOptions, WriteAheadLog
from core.wal.record_format import BadRecordReason, WalRecord
from core.wal.snapshots import CorruptSnapshot, Snapshot, SnapshotLoad, SnapshotStore

__all__ = [
    "BadRecordReason",
    "CorruptSnapshot",
    "EpochFence",
    "FenceCorruptionError",
    "FencedError",
    "RecordTooLargeError",
    "RecoveryReport",
    "Snapshot",
    "SnapshotCorruptionError",
    "SnapshotError",
    "SnapshotLoad",
    "SnapshotStore",
    "SnapshotTooLargeError",
    "TailCut",
    "WalClosedError",
    "WalCorruptionError",
    "WalError",
    "WalFailedError",
    "WalLimitError",
    "WalOptions",
    "WalOverloadedError",
    "WalRecord",
    "WalSeqUnavailableError",
    "WriteAheadLog",
    "acquire_epoch",
    "current_epoch",
]
