"""Exceptions raised by the durability layer (write-ahead log, fencing, snapshots).

Every failure has a named type so a caller can tell "your input broke a limit" (a
`WalLimitError`, the log stays usable) from "the log can no longer be trusted for appends"
(`WalFailedError`, `FencedError`: the log refuses every later append until it is reopened)
from "the files on disk are damaged" (`WalCorruptionError`, `SnapshotCorruptionError`).
"""

from __future__ import annotations


class WalError(Exception):
    """Base class of every error raised by core.wal."""


class WalLimitError(WalError):
    """A request broke a configured limit (record size, group size, pending queue).

    Nothing was written; the log is still usable.
    """


class RecordTooLargeError(WalLimitError):
    """A payload is larger than `record_bytes_max`."""


class WalOverloadedError(WalLimitError):
    """The group-commit queue is full (`pending_records_max` / `pending_bytes_max`)."""


class WalCorruptionError(WalError):
    """The log on disk is damaged somewhere other than a torn tail of the last segment.

    Recovery refuses to continue: replaying garbage or silently dropping acknowledged records
    are both worse than stopping.
    """


class WalSeqUnavailableError(WalError):
    """A replay asked for a sequence number that is not in the log (removed or not written)."""


class WalFailedError(WalError):
    """A write or fsync failed earlier; the file state is unknown and appends are refused.

    Reopen the log (which runs recovery) to continue.
    """


class WalClosedError(WalError):
    """The log was closed."""


class FencedError(WalError):
    """A newer epoch owns the shard: this writer must stop (its appends are refused)."""


class FenceCorruptionError(WalError):
    """The fence file is unreadable (bad magic, size or checksum)."""


class SnapshotError(WalError):
    """Base class of snapshot-store errors."""


class SnapshotTooLargeError(SnapshotError, WalLimitError):
    """A snapshot body is larger than `state_bytes_max`."""


class SnapshotCorruptionError(SnapshotError):
    """A snapshot file failed verification (magic, version, length, sequence or sha256)."""
