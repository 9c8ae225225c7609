"""Exceptions raised by the outbox (journal, publish cursor, publisher).

From core.wal, unchanged: `FencedError` (a newer epoch owns the shard: this instance must
neither append to the journal nor publish).
"""

from __future__ import annotations


class OutboxError(Exception):
    """Base class of every error raised by core.outbox."""


class OutboxInvariantError(OutboxError):
    """The outbox's own invariant broke (a bug, never bad input)."""


class OutboxNotStartedError(OutboxError):
    """The journal was used before `Sequencer.open` started it as its event sink."""


class OutboxRecoveryError(OutboxError):
    """The journal does not fit the shard: it lost events the snapshot covers, or is ahead
    of the WAL. Recovery refuses rather than publish a gap or events nobody logged."""


class OutboxJournalFailedError(OutboxError):
    """The journal stopped accepting events (a failed write or fsync, fencing, overload).

    Nothing is lost: snapshots are refused from then on, so a restart regenerates every
    event the journal did not make durable from the WAL. Restart the shard.
    """


class OutboxOverloadedError(OutboxJournalFailedError):
    """More commands waited for the journal than `buffered_commands_max`."""


class JournalFormatError(OutboxError):
    """A journal record payload is malformed (unknown version, truncated, trailing bytes)."""


class PublishCursorCorruptionError(OutboxError):
    """The publish cursor file is unreadable (bad size, magic or checksum)."""
