"""Sequence tracking per event stream, and epoch fencing per shard. Pure.

A stream is (shard, symbol): each market's events, and the shard's account stream (symbol
''), numbered 1, 2, 3 ... without gaps by the core (docs/adr/0004). For each stream the
ledger keeps the highest sequence number seen and the holes below it:
- seq = last + 1: the next event;
- seq > last + 1: a gap [last + 1, seq - 1] is recorded (a hole, and an audit row), and the
  event is posted: entries commute, so posting later events first ends at the same balances;
- seq <= last inside a hole: a missing event arrived; the hole shrinks or splits;
- seq <= last outside every hole: seen before, a duplicate.
So every event is recognised as new or as a duplicate by its position alone, posting or not.

Epochs: the newest epoch seen for a shard is current; an event of an older epoch was
written by a fenced-off instance and is ignored (and reported), never posted.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import Enum

from ledger.errors import LedgerInvariantError


class Arrival(Enum):
    NEXT = "next"
    AFTER_GAP = "after_gap"
    FILLS_HOLE = "fills_hole"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Gap:
    first_missing_seq: int
    last_missing_seq: int


@dataclass(slots=True)
class StreamState:
    """Highest seq seen and the missing ranges below it (sorted, disjoint, inclusive)."""

    seq_last: int = 0
    holes: list[tuple[int, int]] = field(default_factory=list)
    changed: bool = False
    holes_changed: bool = False

    def observe(self, seq: int) -> tuple[Arrival, Gap | None]:
        """Classify `seq` and update the state; returns the new gap, if any."""
        if seq < 1:
            message = f"sequence numbers start at 1, got {seq}"
            raise LedgerInvariantError(message)
        if seq == self.seq_last + 1:
            self.seq_last = seq
            self.changed = True
            return Arrival.NEXT, None
        if seq > self.seq_last:
            gap = Gap(self.seq_last + 1, seq - 1)
            self.holes.append((gap.first_missing_seq, gap.last_missing_seq))
            self.seq_last = seq
            self.changed = self.holes_changed = True
            return Arrival.AFTER_GAP, gap
        index = bisect.bisect_right(self.holes, (seq, 2**63)) - 1
        if index < 0 or not self.holes[index][0] <= seq <= self.holes[index][1]:
            return Arrival.DUPLICATE, None
        first, last = self.holes.pop(index)
        pieces = [(first, seq - 1), (seq + 1, last)]
        self.holes[index:index] = [piece for piece in pieces if piece[0] <= piece[1]]
        self.changed = self.holes_changed = True
        return Arrival.FILLS_HOLE, None

    def extend(self, first: int, last: int) -> bool:
        """A run of consecutive seqs `first`..`last`: taken (True) only when every one of
        them is NEXT, i.e. the run starts right after `seq_last`; otherwise nothing changes
        and each seq must be `observe`d."""
        if first != self.seq_last + 1 or last < first:
            return False
        self.seq_last = last
        self.changed = True
        return True


@dataclass(slots=True)
class ShardState:
    """The current (newest) epoch of a shard and the highest engine_seq posted under it."""

    epoch: int = 0
    engine_seq_last: int = 0
    changed: bool = False

    def admits(self, epoch: int) -> bool:
        """False for an event of a fenced-off epoch; a newer epoch becomes current."""
        if epoch < self.epoch:
            return False
        if epoch > self.epoch:
            self.epoch = epoch
            self.changed = True
        return True

    def advance(self, engine_seq: int) -> None:
        if engine_seq > self.engine_seq_last:
            self.engine_seq_last = engine_seq
            self.changed = True
