"""Settlement: a batch of core events -> journal entries, in ONE PostgreSQL transaction.

The transaction writes, together: the entries and postings, the materialized balances,
each stream's position and holes, gaps and stale-epoch reports, the shard's epoch and
engine_seq, the ledger's events about them (one outbox row with the batch's entry ids, plus
gap and stale-epoch events: ledger/events_outbox.py), and (for the consumer) the Kafka
offsets the batch advances to. Either all of
it commits or none of it does, so a crash anywhere — before, between the inserts, during
the commit — leaves the offsets where the last committed batch put them, and the redelivered
events are recognised (by their stream position, and by the unique (kind, reference) of
their entries) instead of posting twice.

Outcome per event (contract: exchange.ledger.v1.IngestOutcome):
- POSTED: a new entry; NO_POSTING: a new event that moves no money;
- DUPLICATE: seen before (stream position), or its entry exists already (same event id, or
  the same trade id under another event id): nothing posted, the earlier entry is returned;
- STALE_EPOCH: written under an epoch older than the shard's newest; ignored and recorded.

Offsets are advanced compare-and-set: a batch must start where the stored offset is, so a
second consumer of the same partition (a zombie after a rebalance) fails with
`OffsetConflict` instead of interleaving.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from exchange.events.v1 import envelope_pb2
from exchange.ledger.v1 import ledger_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.batch_planner import CopyPlan, ReadyBatch, parse_records
from ledger.db.connection import DriverConnection, driver_connection
from ledger.db.copy_rows import ENTRIES_COPY, POSTINGS_COPY
from ledger.db.journal_writer import (
    EntryKey,
    JournalWriter,
    add_balance_arrays,
    add_to_balances,
)
from ledger.errors import LedgerError, Reason
from ledger.events_outbox import (
    ReadyEvent,
    now,
    record_entry_batch,
    record_events,
    sequence_gap_detected,
    stale_epoch_event_ignored,
)
from ledger.journal import AccountKey, EntryKind, PlannedEntry
from ledger.posting_rules import EventHeader, plan_events
from ledger.sequencing import Arrival, Gap, ShardState, StreamState

MAX_BATCH_EVENTS: Final = 10_000


class IngestOutcome(IntEnum):
    POSTED = ledger_pb2.INGEST_OUTCOME_POSTED
    DUPLICATE = ledger_pb2.INGEST_OUTCOME_DUPLICATE
    STALE_EPOCH = ledger_pb2.INGEST_OUTCOME_STALE_EPOCH
    NO_POSTING = ledger_pb2.INGEST_OUTCOME_NO_POSTING


@dataclass(frozen=True, slots=True)
class IngestResult:
    event_id: str
    outcome: IngestOutcome
    entry_id: int | None = None


@dataclass(frozen=True, slots=True)
class OffsetAdvance:
    """The batch read a partition from `from_offset` (inclusive) to `to_offset` (exclusive)."""

    consumer_group: str
    topic: str
    partition: int
    from_offset: int
    to_offset: int


@dataclass(frozen=True, slots=True)
class ReadyPosted:
    """A ready batch posted: its events, and whether its COPY plan held (False: the general
    path posted it — a gap, a redelivery, an epoch change, a trade settled before...)."""

    events: int
    by_plan: bool


class OffsetConflictError(Exception):
    """The stored offset is not where this batch started: another consumer moved it."""


_CREATE_SHARDS = """
INSERT INTO shard_positions (shard_id, epoch) SELECT unnest(%s::text[]), 0
ON CONFLICT DO NOTHING
"""
_SELECT_SHARDS = """
SELECT shard_id, epoch, engine_seq_last FROM shard_positions
WHERE shard_id = ANY(%s::text[]) ORDER BY shard_id FOR UPDATE
"""
_CREATE_STREAMS = """
INSERT INTO stream_positions (shard_id, symbol, seq_last)
SELECT shard_id, symbol, 0 FROM unnest(%s::text[], %s::text[]) AS s (shard_id, symbol)
ON CONFLICT DO NOTHING
"""
_SELECT_STREAMS = """
SELECT p.shard_id, p.symbol, p.seq_last FROM stream_positions AS p
JOIN unnest(%s::text[], %s::text[]) AS s (shard_id, symbol)
    ON p.shard_id = s.shard_id AND p.symbol = s.symbol
ORDER BY p.shard_id, p.symbol FOR UPDATE OF p
"""
_TRADE_SETTLED = """
SELECT EXISTS (SELECT 1 FROM journal_entries WHERE kind = %s AND reference = ANY(%s::text[]))
"""
_SELECT_HOLES = """
SELECT h.shard_id, h.symbol, h.first_missing_seq, h.last_missing_seq FROM sequence_holes AS h
JOIN unnest(%s::text[], %s::text[]) AS s (shard_id, symbol)
    ON h.shard_id = s.shard_id AND h.symbol = s.symbol
ORDER BY h.shard_id, h.symbol, h.first_missing_seq
"""


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A validated batch and its planned entries (None: the event moves no money)."""

    headers: list[EventHeader]
    plans: list[PlannedEntry | None]


@dataclass(slots=True)
class _Batch:
    """Everything one transaction decided, before it is written."""

    results: list[IngestResult | None]
    new_entries: list[tuple[int, PlannedEntry]]
    duplicate_entries: list[tuple[int, EntryKey]]
    gaps: list[tuple[str, str, Gap, str, int]]  # shard, symbol, gap, event id, engine_seq
    stale: list[tuple[EventHeader, int]]


class Settlement:
    """Posts batches of core events; safe to share between tasks (one transaction per call)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`before_commit` runs inside each transaction after every write (a crash-test seam)."""
        self._engine = engine
        self._writer = JournalWriter()
        self._before_commit = before_commit

    @property
    def writer(self) -> JournalWriter:
        return self._writer

    @staticmethod
    def prepare(envelopes: Sequence[envelope_pb2.EventEnvelope]) -> PreparedBatch:
        """Validate and plan a batch: pure CPU, no database (may run in a worker thread while
        the previous batch is being written: the consumer and the benchmark pipeline so).

        Raises `LedgerError` for a malformed event or a batch that is too large.
        """
        if len(envelopes) > MAX_BATCH_EVENTS:
            raise LedgerError(
                Reason.BATCH_TOO_LARGE, f"at most {MAX_BATCH_EVENTS} events per batch"
            )
        return PreparedBatch(*plan_events(envelopes))

    async def post(
        self,
        envelopes: Sequence[envelope_pb2.EventEnvelope],
        *,
        offsets: Sequence[OffsetAdvance] = (),
    ) -> list[IngestResult]:
        """Post `envelopes` in order and store `offsets`, atomically.

        Raises `LedgerError` for a malformed event (nothing is written), and
        `OffsetConflictError` when another consumer moved an offset.
        """
        return await self.post_prepared(self.prepare(envelopes), offsets=offsets)

    async def post_prepared(
        self, batch: PreparedBatch, *, offsets: Sequence[OffsetAdvance] = ()
    ) -> list[IngestResult]:
        """`post` for a batch `prepare` made."""
        async with self._engine.begin() as connection:
            driver = await driver_connection(connection)
            results, new_accounts = await self._post(driver, batch.headers, batch.plans, offsets)
            if self._before_commit is not None:
                await self._before_commit()
        self._writer.remember_accounts(new_accounts)
        return results

    async def post_ready(
        self, batch: ReadyBatch, *, offsets: Sequence[OffsetAdvance] = ()
    ) -> ReadyPosted:
        """`post` for a batch the planner (ledger/batch_planner.py) made: its COPY plan when
        that still holds against the stored positions, else the general path over its raw
        records, in the same transaction.

        Raises as `post` does.
        """
        async with self._engine.begin() as connection:
            driver = await driver_connection(connection)
            new_accounts: dict[AccountKey, int] = {}
            by_plan = batch.plan is not None and await _post_plan(driver, batch.plan, offsets)
            if not by_plan:
                prepared = self.prepare(parse_records(batch.values))
                _, new_accounts = await self._post(
                    driver, prepared.headers, prepared.plans, offsets
                )
            if self._before_commit is not None:
                await self._before_commit()
        self._writer.remember_accounts(new_accounts)
        return ReadyPosted(len(batch.values), by_plan=by_plan)

    async def _post(
        self,
        connection: DriverConnection,
        headers: Sequence[EventHeader],
        plans: Sequence[PlannedEntry | None],
        offsets: Sequence[OffsetAdvance],
    ) -> tuple[list[IngestResult], dict[AccountKey, int]]:
        """Round trips: positions (one pipeline), trade lookup + entry ids (one pipeline),
        COPY entries, [new accounts], COPY postings, balances + positions + offsets (one
        pipeline); then the commit."""
        if not headers:
            async with connection.pipeline():
                await _advance_offsets(connection, offsets)
            return [], {}
        shards, streams, _ = await _load_positions(
            connection,
            sorted({h.shard_id for h in headers}),
            sorted({(h.shard_id, h.symbol) for h in headers}),
        )
        batch = _classify(headers, plans, shards, streams)
        written = await self._writer.write_new(
            connection, [entry for _, entry in batch.new_entries]
        )
        entry_ids = {**written.existing, **written.inserted}
        for index, entry in batch.new_entries:
            key = (entry.kind, entry.reference)
            outcome = IngestOutcome.POSTED if key in written.inserted else IngestOutcome.DUPLICATE
            batch.results[index] = IngestResult(headers[index].event_id, outcome, entry_ids[key])
        earlier = await self._writer.existing_entry_ids(
            connection, [key for _, key in batch.duplicate_entries if key not in entry_ids]
        )
        entry_ids.update(earlier)
        for index, key in batch.duplicate_entries:
            batch.results[index] = IngestResult(
                headers[index].event_id, IngestOutcome.DUPLICATE, entry_ids.get(key)
            )
        async with connection.pipeline():
            await add_to_balances(connection, written.balance_changes)
            await _save_positions(connection, shards, streams, gaps=batch.gaps, stale=batch.stale)
            await _record_adjustments(connection, batch, written.inserted)
            await record_entry_batch(connection, list(written.inserted.values()))
            await record_events(connection, _ledger_events(batch))
            await _advance_offsets(connection, offsets)
        results = [result for result in batch.results if result is not None]
        return results, dict(written.new_account_ids)


async def _post_plan(
    connection: DriverConnection, plan: CopyPlan, offsets: Sequence[OffsetAdvance]
) -> bool:
    """Write `plan` if every stream continues right after its stored seq, no epoch is older
    than its shard's and no trade is settled yet; False (nothing written) otherwise.
    Round trips: positions + trade check (one pipeline), the two COPYs, balances +
    positions + outbox + offsets (one pipeline)."""
    trade_check = None
    if plan.trade_references:
        trade_check = (_TRADE_SETTLED, (int(EntryKind.TRADE), plan.trade_references))
    shards, streams, trade_rows = await _load_positions(
        connection, sorted(plan.shards), sorted(plan.streams), also=trade_check
    )
    if trade_rows and trade_rows[0][0]:
        return False
    for shard_id, (epoch, engine_seq) in plan.shards.items():
        if not shards[shard_id].admits(epoch):
            return False
        shards[shard_id].advance(engine_seq)
    for key, (first, last) in plan.streams.items():
        if not streams[key].extend(first, last):
            return False
    async with connection.cursor().copy(ENTRIES_COPY) as copy:
        await copy.write(plan.entries_copy)
    async with connection.cursor().copy(POSTINGS_COPY) as copy:
        await copy.write(plan.postings_copy)
    async with connection.pipeline():
        await add_balance_arrays(connection, plan.balances)
        await _save_positions(connection, shards, streams)
        await _mark_adjustments_posted(connection, plan.adjustments)
        await record_entry_batch(connection, plan.entry_ids)
        await _advance_offsets(connection, offsets)
    return True


def _ledger_events(batch: _Batch) -> list[ReadyEvent]:
    """The ledger's events for the batch's gaps and stale-epoch events (rare: built here)."""
    if not batch.gaps and not batch.stale:
        return []
    detected_at = now()
    events = [
        sequence_gap_detected(
            shard_id=shard_id,
            symbol=symbol,
            first_missing_seq=gap.first_missing_seq,
            last_missing_seq=gap.last_missing_seq,
            detected_by_event_id=event_id,
            engine_seq=engine_seq,
            detected_at=detected_at,
        )
        for shard_id, symbol, gap, event_id, engine_seq in batch.gaps
    ]
    events += [
        stale_epoch_event_ignored(
            ignored_event_id=header.event_id,
            shard_id=header.shard_id,
            symbol=header.symbol,
            engine_seq=header.engine_seq,
            event_epoch=header.epoch,
            current_epoch=current_epoch,
            detected_at=detected_at,
        )
        for header, current_epoch in batch.stale
    ]
    return events


async def _record_adjustments(
    connection: DriverConnection, batch: _Batch, inserted: dict[EntryKey, int]
) -> None:
    """Operator adjustments (matched by transfer id) whose entry this batch posted: POSTED."""
    adjusted = [
        (entry.transfer_id, inserted[(entry.kind, entry.reference)])
        for _, entry in batch.new_entries
        if entry.kind is EntryKind.ADJUSTMENT
        and entry.transfer_id
        and (entry.kind, entry.reference) in inserted
    ]
    await _mark_adjustments_posted(connection, adjusted)


async def _mark_adjustments_posted(
    connection: DriverConnection, adjusted: Sequence[tuple[str, int]]
) -> None:
    """(transfer id, entry id) of operator adjustments just posted."""
    if adjusted:
        await connection.execute(
            "UPDATE adjustments SET status = 2, entry_id = a.entry_id "
            "FROM unnest(%s::text[], %s::bigint[]) AS a (transfer_id, entry_id) "
            "WHERE adjustments.adjustment_id = a.transfer_id",
            ([t for t, _ in adjusted], [e for _, e in adjusted]),
        )


def _classify(
    headers: Sequence[EventHeader],
    plans: Sequence[PlannedEntry | None],
    shards: dict[str, ShardState],
    streams: dict[tuple[str, str], StreamState],
) -> _Batch:
    """Decide each event's fate from the shard epoch and the stream position. Pure."""
    batch = _Batch([None] * len(headers), [], [], [], [])
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


async def _load_positions(
    connection: DriverConnection,
    shard_ids: list[str],
    stream_keys: list[tuple[str, str]],
    *,
    also: tuple[str, tuple[object, ...]] | None = None,
) -> tuple[dict[str, ShardState], dict[tuple[str, str], StreamState], list[tuple[object, ...]]]:
    """Create missing shard and stream rows and read them locked, with the streams' holes,
    and the rows of the query `also` (statement, parameters) if given: one round trip."""
    columns = ([shard for shard, _ in stream_keys], [symbol for _, symbol in stream_keys])
    also_rows: list[tuple[object, ...]] = []
    async with connection.pipeline():
        await connection.execute(_CREATE_SHARDS, (shard_ids,))
        shards_cursor = await connection.execute(_SELECT_SHARDS, (shard_ids,))
        await connection.execute(_CREATE_STREAMS, columns)
        streams_cursor = await connection.execute(_SELECT_STREAMS, columns)
        holes_cursor = await connection.execute(_SELECT_HOLES, columns)
        also_cursor = None if also is None else await connection.execute(*also)
        shard_rows = await shards_cursor.fetchall()
        stream_rows = await streams_cursor.fetchall()
        hole_rows = await holes_cursor.fetchall()
        if also_cursor is not None:
            also_rows = await also_cursor.fetchall()
    shards = {
        shard_id: ShardState(epoch, engine_seq_last)
        for shard_id, epoch, engine_seq_last in shard_rows
    }
    streams = {(shard, symbol): StreamState(seq_last) for shard, symbol, seq_last in stream_rows}
    for shard, symbol, first, last in hole_rows:
        streams[(shard, symbol)].holes.append((first, last))
    return shards, streams, also_rows


async def _save_positions(
    connection: DriverConnection,
    shards: dict[str, ShardState],
    streams: dict[tuple[str, str], StreamState],
    *,
    gaps: Sequence[tuple[str, str, Gap, str, int]] = (),
    stale: Sequence[tuple[EventHeader, int]] = (),
) -> None:
    changed_shards = sorted(key for key, state in shards.items() if state.changed)
    if changed_shards:
        await connection.execute(
            "UPDATE shard_positions SET epoch = s.epoch, engine_seq_last = s.engine_seq_last, "
            "advanced_at = now() "
            "FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS s (shard_id, epoch, "
            "engine_seq_last) WHERE shard_positions.shard_id = s.shard_id",
            (
                changed_shards,
                [shards[k].epoch for k in changed_shards],
                [shards[k].engine_seq_last for k in changed_shards],
            ),
        )
    changed = sorted(key for key, state in streams.items() if state.changed)
    if changed:
        shard_column, symbol_column = [k[0] for k in changed], [k[1] for k in changed]
        await connection.execute(
            "UPDATE stream_positions SET seq_last = s.seq_last "
            "FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS s (shard_id, symbol, seq_last) "
            "WHERE stream_positions.shard_id = s.shard_id AND stream_positions.symbol = s.symbol",
            (shard_column, symbol_column, [streams[k].seq_last for k in changed]),
        )
    refilled = [key for key in changed if streams[key].holes_changed]
    if refilled:
        await connection.execute(
            "DELETE FROM sequence_holes AS h USING unnest(%s::text[], %s::text[]) AS s "
            "(shard_id, symbol) WHERE h.shard_id = s.shard_id AND h.symbol = s.symbol",
            ([key[0] for key in refilled], [key[1] for key in refilled]),
        )
        holes = [(key, hole) for key in refilled for hole in streams[key].holes]
        if holes:
            await connection.execute(
                "INSERT INTO sequence_holes (shard_id, symbol, first_missing_seq, "
                "last_missing_seq) SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], "
                "%s::bigint[])",
                (
                    [key[0] for key, _ in holes],
                    [key[1] for key, _ in holes],
                    [hole[0] for _, hole in holes],
                    [hole[1] for _, hole in holes],
                ),
            )
    if gaps:
        await connection.execute(
            "INSERT INTO sequence_gaps (shard_id, symbol, first_missing_seq, last_missing_seq, "
            "detected_by_event_id) SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], "
            "%s::bigint[], %s::text[])",
            (
                [g[0] for g in gaps],
                [g[1] for g in gaps],
                [g[2].first_missing_seq for g in gaps],
                [g[2].last_missing_seq for g in gaps],
                [g[3] for g in gaps],
            ),
        )
    if stale:
        await connection.execute(
            "INSERT INTO stale_epoch_events (event_id, shard_id, symbol, engine_seq, event_epoch, "
            "current_epoch) SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], "
            "%s::bigint[], %s::bigint[], %s::bigint[]) ON CONFLICT (event_id) DO NOTHING",
            (
                [h.event_id for h, _ in stale],
                [h.shard_id for h, _ in stale],
                [h.symbol for h, _ in stale],
                [h.engine_seq for h, _ in stale],
                [h.epoch for h, _ in stale],
                [current for _, current in stale],
            ),
        )


async def _advance_offsets(connection: DriverConnection, offsets: Sequence[OffsetAdvance]) -> None:
    for advance in offsets:
        # Compare-and-set: a first batch creates the row; a later one moves it only from
        # where it starts (a concurrent first insert makes the loser's WHERE false).
        cursor = await connection.execute(
            "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (consumer_group, topic, partition) "
            "DO UPDATE SET next_offset = EXCLUDED.next_offset "
            "WHERE consumer_offsets.next_offset = %s RETURNING next_offset",
            (
                advance.consumer_group,
                advance.topic,
                advance.partition,
                advance.to_offset,
                advance.from_offset,
            ),
        )
        if await cursor.fetchone() is None:
            message = (
                f"{advance.topic}[{advance.partition}] for {advance.consumer_group}: the stored "
                f"offset is not {advance.from_offset}, where this batch starts"
            )
            raise OffsetConflictError(message)


async def stored_offsets(engine: AsyncEngine, consumer_group: str, topic: str) -> dict[int, int]:
    """partition -> next offset to read, as the last committed batch left them."""
    async with engine.connect() as connection:
        driver = await driver_connection(connection)
        cursor = await driver.execute(
            "SELECT partition, next_offset FROM consumer_offsets "
            "WHERE consumer_group = %s AND topic = %s",
            (consumer_group, topic),
        )
        rows = await cursor.fetchall()
        await connection.rollback()
    return {int(partition): int(offset) for partition, offset in rows}
