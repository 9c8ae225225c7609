"""Domain values -> the contracts' messages (exchange.ledger.types.v1), shared by the gRPC
service and the ledger's events (ledger/events_outbox.py). Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from exchange.ledger.types.v1 import types_pb2
from google.protobuf import duration_pb2, timestamp_pb2

from ledger.domain import Correction, Entry, ReconciliationReport
from ledger.journal import AccountKey, Posting


def timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def account_message(account: AccountKey) -> types_pb2.LedgerAccount:
    return types_pb2.LedgerAccount(
        owner_id=account.owner_id,
        asset=account.asset,
        kind=types_pb2.AccountKind.ValueType(account.kind),
    )


def posting_message(posting: Posting) -> types_pb2.Posting:
    return types_pb2.Posting(account=account_message(posting.account), amount=posting.amount)


def entry_message(entry: Entry) -> types_pb2.JournalEntry:
    return types_pb2.JournalEntry(
        entry_id=str(entry.entry_id),
        kind=int(entry.kind),  # type: ignore[arg-type]
        reference=entry.reference,
        source_event_id=entry.source_event_id,
        symbol=entry.symbol,
        engine_seq=entry.engine_seq,
        epoch=entry.epoch,
        postings=[posting_message(p) for p in entry.postings],
        posted_at=timestamp(entry.posted_at),
        reverses_entry_id="" if entry.reverses_entry_id is None else str(entry.reverses_entry_id),
        correction_id=entry.correction_id,
        memo=entry.memo,
    )


def correction_message(correction: Correction) -> types_pb2.Correction:
    message = types_pb2.Correction(
        correction_id=correction.correction_id,
        status=int(correction.status),  # type: ignore[arg-type]
        reason=correction.reason,
        requested_by=correction.requested_by,
        requested_at=timestamp(correction.requested_at),
        approved_by=correction.approved_by,
        approved_at=timestamp(correction.approved_at),
        applied_by=correction.applied_by,
        applied_at=timestamp(correction.applied_at),
        rejected_by=correction.rejected_by,
        rejected_at=timestamp(correction.rejected_at),
        applied_entry_ids=[str(entry_id) for entry_id in correction.applied_entry_ids],
    )
    if correction.reverse_entry_id is not None:
        message.reverse_entry_id = str(correction.reverse_entry_id)
    else:
        message.adjustment.postings.extend(posting_message(p) for p in correction.postings or ())
    return message


def reconciliation_message(
    report: ReconciliationReport, *, generated_at: datetime
) -> types_pb2.ReconciliationReport:
    return types_pb2.ReconciliationReport(
        symbol=report.symbol,
        status=int(report.status),  # type: ignore[arg-type]
        engine_seq=report.engine_seq,
        core_engine_seq=report.core_engine_seq,
        ledger_engine_seq=report.ledger_engine_seq,
        gaps=[
            types_pb2.SequenceGap(
                symbol=g.symbol,
                first_missing_seq=g.first_missing_seq,
                last_missing_seq=g.last_missing_seq,
                resolved=g.resolved,
            )
            for g in report.gaps
        ],
        differences=[
            types_pb2.BalanceDifference(
                account=account_message(d.account), expected=d.expected, actual=d.actual
            )
            for d in report.differences
        ],
        generated_at=timestamp(generated_at),
        lag_engine_seqs=report.lag_engine_seqs,
        stalled_for=duration_pb2.Duration(
            seconds=report.stalled_ms // 1000, nanos=report.stalled_ms % 1000 * 1_000_000
        ),
    )
