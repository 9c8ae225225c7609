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
from typing import Final

from exchange.events.v1 import envelope_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.batch_planner import CopyPlan, ReadyBatch, parse_records
from ledger.batch_rules import BatchDecision, classify
from ledger.db.adjustment_rows import mark_adjustments_posted
from ledger.db.connection import DriverConnection, driver_connection
from ledger.db.copy_rows import ENTRIES_COPY, POSTINGS_COPY
from ledger.db.journal_writer import (
    JournalWriter,
    add_balance_arrays,
    add_to_balances,
)
from ledger.db.offsets import OffsetAdvance, advance_offsets
from ledger.db.positions import TRADE_SETTLED, load_positions, save_positions
from ledger.domain import IngestOutcome, IngestResult
from ledger.errors import LedgerError, Reason
from ledger.events_outbox import (
    ReadyEvent,
    now,
    record_entry_batch,
    record_events,
    sequence_gap_detected,
    stale_epoch_event_ignored,
)
from ledger.journal import AccountKey, EntryKey, EntryKind, PlannedEntry
from ledger.posting_rules import EventHeader, plan_events

BATCH_EVENTS_MAX: Final = 10_000


@dataclass(frozen=True, slots=True)
class ReadyPosted:
    """A ready batch posted: its events, and whether its COPY plan held (False: the general
    path posted it — a gap, a redelivery, an epoch change, a trade settled before...)."""

    events: int
    by_plan: bool


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A validated batch and its planned entries (None: the event moves no money)."""

    headers: list[EventHeader]
    plans: list[PlannedEntry | None]


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
        if len(envelopes) > BATCH_EVENTS_MAX:
            raise LedgerError(
                Reason.BATCH_TOO_LARGE, f"at most {BATCH_EVENTS_MAX} events per batch"
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
                await advance_offsets(connection, offsets)
            return [], {}
        shards, streams, _ = await load_positions(
            connection,
            sorted({h.shard_id for h in headers}),
            sorted({(h.shard_id, h.symbol) for h in headers}),
        )
        batch = classify(headers, plans, shards, streams)
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
            await save_positions(connection, shards, streams, gaps=batch.gaps, stale=batch.stale)
            await _record_adjustments(connection, batch, written.inserted)
            await record_entry_batch(connection, list(written.inserted.values()))
            await record_events(connection, _ledger_events(batch))
            await advance_offsets(connection, offsets)
        results = [result for result in batch.results if result is not None]
        return results, dict(written.new_account_ids)


async def _post_plan(
    connection: DriverConnection, plan: CopyPlan, offsets: Sequence[OffsetAdvance]
) -> bool:
    """Write `plan` if its runs continue the stored positions (`SteadyRuns.continues`);
    False (nothing written) otherwise.
    Round trips: positions + trade check (one pipeline), the two COPYs, balances +
    positions + outbox + offsets (one pipeline)."""
    trade_check = None
    if plan.trade_references:
        trade_check = (TRADE_SETTLED, (int(EntryKind.TRADE), plan.trade_references))
    shards, streams, trade_rows = await load_positions(
        connection, sorted(plan.runs.shards), sorted(plan.runs.streams), also=trade_check
    )
    trade_settled = bool(trade_rows and trade_rows[0][0])
    if not plan.runs.continues(shards, streams, trade_settled=trade_settled):
        return False
    async with connection.cursor().copy(ENTRIES_COPY) as copy:
        await copy.write(plan.entries_copy)
    async with connection.cursor().copy(POSTINGS_COPY) as copy:
        await copy.write(plan.postings_copy)
    async with connection.pipeline():
        await add_balance_arrays(connection, plan.balances)
        await save_positions(connection, shards, streams)
        await mark_adjustments_posted(connection, plan.adjustments)
        await record_entry_batch(connection, plan.entry_ids)
        await advance_offsets(connection, offsets)
    return True


def _ledger_events(batch: BatchDecision) -> list[ReadyEvent]:
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
    connection: DriverConnection, batch: BatchDecision, inserted: dict[EntryKey, int]
) -> None:
    """Operator adjustments (matched by transfer id) whose entry this batch posted: POSTED."""
    adjusted = [
        (entry.transfer_id, inserted[(entry.kind, entry.reference)])
        for _, entry in batch.new_entries
        if entry.kind is EntryKind.ADJUSTMENT
        and entry.transfer_id
        and (entry.kind, entry.reference) in inserted
    ]
    await mark_adjustments_posted(connection, adjusted)
