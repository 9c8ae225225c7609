"""The ledger's events (`ledger.events.v1`): rows of `ledger_outbox`, written in the caller's
transaction together with the effect they announce (migration 0004, docs/adr/0010).

Two kinds of rows:
- an **entry batch**: the ids of the entries one transaction posted, as id ranges
  (`entry_id_ranges`, an `int8multirange`: ids come in blocks, so a settlement batch is a
  handful of runs — migration 0005; rows from before hold an `entry_ids` array). One cheap
  row per settlement batch; a correction's apply: one row. The publisher expands it into one
  `EntryPosted` per entry, read back from the journal — deterministic, the journal never
  changes;
- a **ready-made event**: a serialized `EventEnvelope` (seq 0: the publisher assigns it)
  under a deterministic `event_id`, inserted ON CONFLICT (event_id) DO NOTHING, so a retried
  step adds nothing: `SequenceGapDetected`, `StaleEpochEventIgnored`, `CorrectionRequested`,
  `CorrectionApproved`, `CorrectionRejected`, `CorrectionApplied`, `ReconciliationCompleted`.

Event ids: `ledger:entry-posted:<entry_id>`, `ledger:sequence-gap:<shard>:<symbol>:<first>-<last>`,
`ledger:stale-epoch:<ignored event id>`, `ledger:correction-<step>:<correction_id>`,
`ledger:reconciliation:<sha256 of the report without its time, 32 hex digits>`.

All ledger events form ONE stream (`LEDGER_STREAM`): envelope `symbol` is empty (the market
is inside the payload), `seq` is gap-free from 1 over the stream, the record key is the
stream name, so they all land in one partition in seq order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from exchange.events.v1 import envelope_pb2, ledger_events_pb2
from exchange.ledger.types.v1 import types_pb2

from ledger.db.connection import DriverConnection
from ledger.domain import Correction, Entry, ReconciliationReport
from ledger.proto_mapping import (
    correction_message,
    entry_message,
    reconciliation_message,
    timestamp,
)

LEDGER_STREAM: Final = "ledger"  # the one seq stream, and the record key
EVENT_VERSION: Final = 1
EVENT_ID_PREFIX: Final = "ledger:"

_INSERT_ENTRY_BATCH = (
    "INSERT INTO ledger_outbox (entry_id_ranges) VALUES (%s::text::int8multirange)"
)
_INSERT_READY = (
    "INSERT INTO ledger_outbox (event_id, envelope) "
    "SELECT * FROM unnest(%s::text[], %s::bytea[]) ON CONFLICT (event_id) DO NOTHING"
)

ReadyEvent = tuple[str, bytes]  # (event_id, serialized EventEnvelope without seq)


def entry_posted_event_id(entry_id: int) -> str:
    return f"{EVENT_ID_PREFIX}entry-posted:{entry_id}"


def _envelope(
    event_id: str,
    *,
    occurred_at: datetime,
    correlation_id: str,
    causation_id: str,
    shard_id: str = "",
    engine_seq: int = 0,
    seq: int = 0,
) -> envelope_pb2.EventEnvelope:
    envelope = envelope_pb2.EventEnvelope(
        event_id=event_id,
        event_version=EVENT_VERSION,
        seq=seq,
        correlation_id=correlation_id,
        causation_id=causation_id,
        engine_seq=engine_seq,
        shard_id=shard_id,
        producer=envelope_pb2.PRODUCER_LEDGER,
    )
    envelope.occurred_at.FromDatetime(occurred_at.astimezone(UTC))
    return envelope


def entry_posted(entry: Entry, *, seq: int) -> envelope_pb2.EventEnvelope:
    """The EntryPosted of a journal entry: a function of the entry (and its seq) only."""
    envelope = _envelope(
        entry_posted_event_id(entry.entry_id),
        occurred_at=entry.posted_at,
        correlation_id=entry.correction_id or entry.reference,
        causation_id=entry.source_event_id or entry.correction_id,
        shard_id=entry.shard_id,
        engine_seq=entry.engine_seq,
        seq=seq,
    )
    envelope.entry_posted.entry.CopyFrom(entry_message(entry))
    return envelope


def with_seq(serialized: bytes, seq: int) -> bytes:
    """A ready-made envelope with its seq set."""
    envelope = envelope_pb2.EventEnvelope()
    envelope.ParseFromString(serialized)
    envelope.seq = seq
    return envelope.SerializeToString()


def sequence_gap_detected(
    *,
    shard_id: str,
    symbol: str,
    first_missing_seq: int,
    last_missing_seq: int,
    detected_by_event_id: str,
    engine_seq: int,
    detected_at: datetime,
) -> ReadyEvent:
    event_id = (
        f"{EVENT_ID_PREFIX}sequence-gap:{shard_id}:{symbol}:{first_missing_seq}-{last_missing_seq}"
    )
    envelope = _envelope(
        event_id,
        occurred_at=detected_at,
        correlation_id=detected_by_event_id,
        causation_id=detected_by_event_id,
        shard_id=shard_id,
        engine_seq=engine_seq,
    )
    envelope.sequence_gap_detected.gap.CopyFrom(
        types_pb2.SequenceGap(
            symbol=symbol,
            first_missing_seq=first_missing_seq,
            last_missing_seq=last_missing_seq,
            detected_at=timestamp(detected_at),
            resolved=False,
        )
    )
    return event_id, envelope.SerializeToString()


def stale_epoch_event_ignored(
    *,
    ignored_event_id: str,
    shard_id: str,
    symbol: str,
    engine_seq: int,
    event_epoch: int,
    current_epoch: int,
    detected_at: datetime,
) -> ReadyEvent:
    event_id = f"{EVENT_ID_PREFIX}stale-epoch:{ignored_event_id}"
    envelope = _envelope(
        event_id,
        occurred_at=detected_at,
        correlation_id=ignored_event_id,
        causation_id=ignored_event_id,
        shard_id=shard_id,
        engine_seq=engine_seq,
    )
    envelope.stale_epoch_event_ignored.CopyFrom(
        ledger_events_pb2.StaleEpochEventIgnored(
            ignored_event_id=ignored_event_id,
            symbol=symbol,
            event_epoch=event_epoch,
            current_epoch=current_epoch,
        )
    )
    return event_id, envelope.SerializeToString()


CORRECTION_STEPS: Final = ("REQUESTED", "APPROVED", "REJECTED", "APPLIED")


def correction_step(step: str, correction: Correction) -> ReadyEvent:
    """The event of a correction's step (one of CORRECTION_STEPS), with its state after it."""
    occurred_at = {
        "REQUESTED": correction.requested_at,
        "APPROVED": correction.approved_at,
        "REJECTED": correction.rejected_at,
        "APPLIED": correction.applied_at,
    }[step]
    event_id = f"{EVENT_ID_PREFIX}correction-{step.lower()}:{correction.correction_id}"
    envelope = _envelope(
        event_id,
        occurred_at=occurred_at or correction.requested_at,
        correlation_id=correction.correction_id,
        causation_id=correction.correction_id,
    )
    message = correction_message(correction)
    if step == "REQUESTED":
        envelope.correction_requested.correction.CopyFrom(message)
    elif step == "APPROVED":
        envelope.correction_approved.correction.CopyFrom(message)
    elif step == "REJECTED":
        envelope.correction_rejected.correction.CopyFrom(message)
    else:
        envelope.correction_applied.correction.CopyFrom(message)
    return event_id, envelope.SerializeToString()


def reconciliation_completed(
    report: ReconciliationReport, *, shard_id: str, generated_at: datetime
) -> ReadyEvent:
    """Content-addressed: the same report (time aside) is the same event."""
    message = reconciliation_message(report, generated_at=generated_at)
    content = types_pb2.ReconciliationReport()
    content.CopyFrom(message)
    content.ClearField("generated_at")
    digest = hashlib.sha256(content.SerializeToString(deterministic=True)).hexdigest()[:32]
    event_id = f"{EVENT_ID_PREFIX}reconciliation:{digest}"
    envelope = _envelope(
        event_id,
        occurred_at=generated_at,
        correlation_id=event_id,
        causation_id=event_id,
        shard_id=shard_id,
        engine_seq=report.engine_seq,
    )
    envelope.reconciliation_completed.report.CopyFrom(message)
    return event_id, envelope.SerializeToString()


def now() -> datetime:
    return datetime.now(UTC)


def id_ranges(entry_ids: Sequence[int]) -> list[tuple[int, int]]:
    """Distinct ids as ascending runs of consecutive ids: (first, last), both included."""
    ranges: list[tuple[int, int]] = []
    first = last = None
    for entry_id in sorted(set(entry_ids)):
        if last is not None and entry_id == last + 1:
            last = entry_id
            continue
        if first is not None and last is not None:
            ranges.append((first, last))
        first = last = entry_id
    if first is not None and last is not None:
        ranges.append((first, last))
    return ranges


def multirange_text(ranges: Sequence[tuple[int, int]]) -> str:
    """(first, last) runs as an int8multirange literal: `{[1,3],[7,7]}`."""
    return "{" + ",".join(f"[{first},{last}]" for first, last in ranges) + "}"


async def record_entry_batch(connection: DriverConnection, entry_ids: Sequence[int]) -> None:
    """One row for the entries a transaction posted, as id ranges (ascending ids = posting
    order; ids come in blocks, so a batch is a few ranges)."""
    if entry_ids:
        await connection.execute(_INSERT_ENTRY_BATCH, (multirange_text(id_ranges(entry_ids)),))


async def record_events(connection: DriverConnection, events: Sequence[ReadyEvent]) -> None:
    """Ready-made events; one already recorded (same event id) is not recorded again."""
    if events:
        await connection.execute(
            _INSERT_READY, ([event_id for event_id, _ in events], [body for _, body in events])
        )
