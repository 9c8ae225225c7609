"""The ledger's domain values that cross its modules: no I/O.

The rows the read model returns (`Balance`, `Entry`), a correction and its status, and what
reconciliation compares and reports. They live here, not beside the code that reads or
writes them, so that `proto_mapping` and `events_outbox` (which turn them into messages) and
`corrections` / `reconciliation` / `read_model` (which produce them) do not import each
other in a circle. Posting values (`AccountKey`, `Posting`, `PlannedEntry`) are in
`journal.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

from exchange.ledger.types.v1 import types_pb2
from exchange.ledger.v1 import ledger_pb2

from ledger.journal import AccountKey, EntryKind, Posting


@dataclass(frozen=True, slots=True)
class Balance:
    account: AccountKey
    balance: int
    last_engine_seq: int


@dataclass(frozen=True, slots=True)
class Entry:
    entry_id: int
    kind: EntryKind
    reference: str
    source_event_id: str
    symbol: str
    engine_seq: int
    epoch: int
    postings: tuple[Posting, ...]
    posted_at: datetime
    reverses_entry_id: int | None
    correction_id: str
    memo: str
    shard_id: str = ""


class CorrectionStatus(IntEnum):
    PENDING_APPROVAL = types_pb2.CORRECTION_STATUS_PENDING_APPROVAL
    APPROVED = types_pb2.CORRECTION_STATUS_APPROVED
    APPLIED = types_pb2.CORRECTION_STATUS_APPLIED
    REJECTED = types_pb2.CORRECTION_STATUS_REJECTED


@dataclass(frozen=True, slots=True)
class Correction:
    correction_id: str
    status: CorrectionStatus
    reason: str
    reverse_entry_id: int | None
    postings: tuple[Posting, ...] | None
    requested_by: str
    requested_at: datetime
    approved_by: str = ""
    approved_at: datetime | None = None
    applied_by: str = ""
    applied_at: datetime | None = None
    rejected_by: str = ""
    rejected_at: datetime | None = None
    applied_entry_ids: tuple[int, ...] = ()


class ReconciliationStatus(IntEnum):
    MATCHED = types_pb2.RECONCILIATION_STATUS_MATCHED
    DIFFERENCES = types_pb2.RECONCILIATION_STATUS_DIFFERENCES
    BEHIND = types_pb2.RECONCILIATION_STATUS_BEHIND
    LAGGING = types_pb2.RECONCILIATION_STATUS_LAGGING


@dataclass(frozen=True, slots=True)
class LagBound:
    """Past either bound a lagging ledger reads LAGGING (ledger/README.md, "Reconciliation")."""

    engine_seqs_max: int = 10_000  # ≈ 50 s of the soak's 200 orders/s
    stalled_ms_max: int = 30_000

    def __post_init__(self) -> None:
        if self.engine_seqs_max < 0 or self.stalled_ms_max < 0:
            raise ValueError("lag bounds must be >= 0")

    def exceeded(self, lag_engine_seqs: int, stalled_ms: int) -> bool:
        return lag_engine_seqs > 0 and (
            lag_engine_seqs > self.engine_seqs_max or stalled_ms > self.stalled_ms_max
        )


@dataclass(frozen=True, slots=True)
class EngineBalance:
    account_id: str
    asset: str
    available: int
    held: int


@dataclass(frozen=True, slots=True)
class EngineBalances:
    engine_seq: int
    balances: tuple[EngineBalance, ...]
    # The newest command <= engine_seq with events (0: unknown); the ledger has seen
    # everything up to engine_seq once it posted this one.
    last_event_engine_seq: int = 0


@dataclass(frozen=True, slots=True)
class EngineStatus:
    shard_id: str
    epoch: int
    engine_seq: int
    market_seqs: Mapping[str, int] = field(default_factory=dict)
    # The newest command <= engine_seq with events (0: unknown, taken as engine_seq).
    last_event_engine_seq: int = 0


@dataclass(frozen=True, slots=True)
class GapReport:
    symbol: str
    first_missing_seq: int
    last_missing_seq: int
    resolved: bool


@dataclass(frozen=True, slots=True)
class Difference:
    account: AccountKey
    expected: int  # the core's
    actual: int  # the ledger's


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    symbol: str
    status: ReconciliationStatus
    engine_seq: int
    core_engine_seq: int
    ledger_engine_seq: int
    gaps: tuple[GapReport, ...]
    differences: tuple[Difference, ...]
    lag_engine_seqs: int = 0
    stalled_ms: int = 0  # with a lag: how long the ledger has not advanced


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
