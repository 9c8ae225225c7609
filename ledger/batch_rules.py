"""What settlement decides about a batch of events, before any of it is written. Pure: no I/O.

Two paths post a batch (ledger/settlement.py), and this module is the one place that decides
between them and what each event becomes:
- `steady_runs`: is the batch in the steady state on its own (each stream's events
  consecutive, one epoch per shard, no entry twice)? The planner (ledger/batch_planner.py)
  builds a COPY plan only for such a batch.
- `SteadyRuns.continues`: does that still hold against the stored positions (each stream
  continues right after its last seq, no epoch older than its shard's, no trade settled
  already)? Settlement writes the plan only then.
- `classify`: the general path, event by event: STALE_EPOCH, DUPLICATE, NO_POSTING, or a
  new entry, with the gaps it reveals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.domain import IngestOutcome, IngestResult
from ledger.journal import EntryKey, PlannedEntry
from ledger.posting_rules import EventHeader
from ledger.sequencing import Arrival, Gap, ShardState, StreamState


@dataclass(frozen=True, slots=True)
class SteadyRuns:
    """A batch in the steady state: per shard (its one epoch, its highest engine_seq), per
    stream its (first, last) seq. Plain tuples: a COPY plan carries it across processes."""

    shards: dict[str, tuple[int, int]]
    streams: dict[tuple[str, str], tuple[int, int]]

    def continues(
        self,
        shards: dict[str, ShardState],
        streams: dict[tuple[str, str], StreamState],
        *,
        trade_settled: bool,
    ) -> bool:
        """Whether the runs continue the stored positions: no trade of the batch settled
        already, no epoch older than its shard's, each stream right after its last seq. The
        states are advanced as it goes (saved with the plan's rows only when True)."""
        if trade_settled:
            return False
        for shard_id, (epoch, engine_seq) in self.shards.items():
            if not shards[shard_id].admits(epoch):
                return False
            shards[shard_id].advance(engine_seq)
        return all(streams[key].extend(first, last) for key, (first, last) in self.streams.items())


def steady_runs(
    headers: Sequence[EventHeader], plans: Sequence[PlannedEntry | None]
) -> SteadyRuns | None:
    """The batch's runs if it is in the steady state on its own, else None (the general path
    posts it: an epoch change, a gap or a repeat inside the batch, one entry twice)."""
    shards: dict[str, tuple[int, int]] = {}
    streams: dict[tuple[str, str], tuple[int, int]] = {}
    for header in headers:
        epoch, engine_seq = shards.get(header.shard_id, (header.epoch, 0))
        if epoch != header.epoch:
            return None
        shards[header.shard_id] = (epoch, max(engine_seq, header.engine_seq))
        key = (header.shard_id, header.symbol)
        run = streams.get(key)
        if run is not None and header.seq != run[1] + 1:
            return None
        streams[key] = (header.seq if run is None else run[0], header.seq)
    keys = [(plan.kind, plan.reference) for plan in plans if plan is not None]
    if len(set(keys)) != len(keys):
        return None  # e.g. one trade under two event ids
    return SteadyRuns(shards, streams)


@dataclass(slots=True)
class BatchDecision:
    """Everything one transaction decided, before it is written."""

    results: list[IngestResult | None]
    new_entries: list[tuple[int, PlannedEntry]]
    duplicate_entries: list[tuple[int, EntryKey]]
    gaps: list[tuple[str, str, Gap, str, int]]  # shard, symbol, gap, event id, engine_seq
    stale: list[tuple[EventHeader, int]]


def classify(
    headers: Sequence[EventHeader],
    plans: Sequence[PlannedEntry | None],
    shards: dict[str, ShardState],
    streams: dict[tuple[str, str], StreamState],
) -> BatchDecision:
    """Decide each event's fate from the shard epoch and the stream position. Pure."""
    batch = BatchDecision([None] * len(headers), [], [], [], [])
    planned_in_batch: set[EntryKey] = set()
    for index, (header, plan) in enumerate(zip(headers, plans, strict=True)):
        shard = shards[header.shard_id]
        if not shard.admits(header.epoch):
            batch.stale.append((header, shard.epoch))
            batch.results[index] = IngestResult(header.event_id, IngestOutcome.STALE_EPOCH)
            continue
        arrival, gap = streams[(header.shard_id, header.symbol)].observe(header.seq)
        if gap is not None:
            batch.gaps.append(
                (header.shard_id, header.symbol, gap, header.event_id, header.engine_seq)
            )
        if arrival is Arrival.DUPLICATE:
            if plan is None:
                batch.results[index] = IngestResult(header.event_id, IngestOutcome.DUPLICATE)
            else:
                batch.duplicate_entries.append((index, (plan.kind, plan.reference)))
            continue
        shard.advance(header.engine_seq)
        if plan is None:
            batch.results[index] = IngestResult(header.event_id, IngestOutcome.NO_POSTING)
            continue
        key = (plan.kind, plan.reference)
        if key in planned_in_batch:
            batch.duplicate_entries.append((index, key))
            continue
        planned_in_batch.add(key)
        batch.new_entries.append((index, plan))
    return batch
