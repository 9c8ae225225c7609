"""The LedgerService of the contracts (exchange.ledger.v1), on grpc.aio.

Identity (docs/adr/0006): the edge sets `x-exchange-account-id` (traders) and
`x-exchange-operator-id` (operators and internal services) and strips client copies.
`/v1/admin/*` and `/v1/internal/*` calls require an operator identity (OPERATOR_REQUIRED);
ListBalances shows a trader their own balances, an operator anyone's.

Errors (docs/adr/0003): a `LedgerError` becomes a gRPC status with the code its reason
declares and `google.rpc.ErrorInfo{domain="exchange", reason, metadata}` (plus BadRequest
for a field); anything else is INTERNAL (logged, no detail leaks).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import grpc
from exchange.ledger.types.v1 import types_pb2
from exchange.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncEngine

from common.error_status import grpc_error_status
from common.identity_headers import ACCOUNT_HEADER, OPERATOR_HEADER
from common.unary_handlers import answer_refusals
from ledger import read_model
from ledger.adjustments import Adjustment, Adjustments
from ledger.balance_checks import check_invariants, rebuild_balances
from ledger.corrections import Corrections
from ledger.domain import CorrectionStatus, IngestResult
from ledger.errors import LedgerError, Reason
from ledger.journal import AccountKey, AccountKind, EntryKind, checked_account
from ledger.proto_mapping import (
    account_message,
    correction_message,
    entry_message,
    reconciliation_message,
    timestamp,
)
from ledger.reconciliation import Reconciliation
from ledger.settlement import Settlement

LOGGER: Final = logging.getLogger("ledger.service")

Context = grpc.aio.ServicerContext[Any, Any]
Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response")


def error_status(error: LedgerError) -> grpc.Status:
    return grpc_error_status(error.reason.value, error.message, error.metadata)


def nul_field(message: Message, prefix: str = "") -> str | None:
    """The path of the first string field of `message` (nested, repeated) holding a NUL, or
    None. PostgreSQL text cannot hold NUL: such a filter or value is refused up front as
    FIELD_INVALID instead of failing in the database (found by bench/fuzz.py)."""
    for descriptor, value in message.ListFields():
        path = f"{prefix}{descriptor.name}"
        if descriptor.type == FieldDescriptor.TYPE_STRING:
            values = value if descriptor.is_repeated else (value,)
            if any("\x00" in text for text in values):
                return path
        elif descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            entry = descriptor.message_type
            if entry is not None and entry.GetOptions().map_entry:
                continue  # no map fields in the ledger's requests
            items = value if descriptor.is_repeated else (value,)
            for item in items:
                found = nul_field(item, f"{path}.")
                if found is not None:
                    return found
    return None


def _status_of(error: Exception) -> grpc.Status:
    """A LedgerError's named status; anything else is a bug: INTERNAL, logged."""
    if isinstance(error, LedgerError):
        return error_status(error)
    LOGGER.error("ledger RPC failed", exc_info=error)
    return error_status(LedgerError(Reason.INTERNAL, "internal error"))


def _rpc(
    method: Callable[[Any, Request, Context], Awaitable[Response]],
) -> Callable[[Any, Request, Context], Awaitable[Response]]:
    """Turn LedgerError into its status, anything else into INTERNAL (common/unary_handlers.py);
    refuse a request with a NUL in any string."""

    @functools.wraps(method)
    async def checked(self: Any, request: Request, context: Context) -> Response:
        field = nul_field(request)
        if field is not None:
            raise LedgerError(Reason.FIELD_INVALID, f"{field} holds a NUL", field=field)
        return await method(self, request, context)

    return answer_refusals(checked, _status_of)


def _header(context: Context, name: str) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == name and isinstance(value, str):
            return value.strip()
    return ""


def _operator(context: Context) -> str:
    operator_id = _header(context, OPERATOR_HEADER)
    if not operator_id:
        raise LedgerError(
            Reason.OPERATOR_REQUIRED, f"an operator identity ({OPERATOR_HEADER}) is required"
        )
    return operator_id


def _account_key(account: types_pb2.LedgerAccount) -> AccountKey:
    try:
        kind = AccountKind(account.kind)
    except ValueError:
        raise LedgerError(
            Reason.FIELD_INVALID,
            "posting account kind is unspecified",
            field="postings.account.kind",
        ) from None
    return checked_account(account.owner_id, account.asset, kind)


def _result(result: IngestResult) -> ledger_pb2.IngestResult:
    return ledger_pb2.IngestResult(
        event_id=result.event_id,
        outcome=int(result.outcome),  # type: ignore[arg-type]
        entry_id="" if result.entry_id is None else str(result.entry_id),
    )


def _adjustment(adjustment: Adjustment) -> types_pb2.Adjustment:
    return types_pb2.Adjustment(
        adjustment_id=adjustment.adjustment_id,
        owner_id=adjustment.owner_id,
        asset=adjustment.asset,
        amount=adjustment.amount,
        memo=adjustment.memo,
        status=int(adjustment.status),  # type: ignore[arg-type]
        reject_reason=adjustment.reject_reason,
        requested_by=adjustment.requested_by,
        requested_at=timestamp(adjustment.requested_at),
        entry_id="" if adjustment.entry_id is None else str(adjustment.entry_id),
    )


def _entry_id(text: str, field: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise LedgerError(
            Reason.FIELD_INVALID, f"{field} must be an entry id", field=field
        ) from None
    if value <= 0:
        raise LedgerError(Reason.FIELD_INVALID, f"{field} must be an entry id", field=field)
    return value


class LedgerService(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settlement: Settlement,
        corrections: Corrections,
        reconciliation: Reconciliation,
        adjustments: Adjustments,
    ) -> None:
        self._engine = engine
        self._settlement = settlement
        self._corrections = corrections
        self._reconciliation = reconciliation
        self._adjustments = adjustments

    async def _record_one(
        self, context: Context, event: Any, payload: str
    ) -> ledger_pb2.IngestResult:
        _operator(context)
        if event.WhichOneof("payload") != payload:
            raise LedgerError(
                Reason.FIELD_INVALID, f"the event must carry {payload}", field="event"
            )
        [result] = await self._settlement.post([event])
        return _result(result)

    @_rpc
    async def RecordTradeExecuted(  # noqa: N802
        self, request: ledger_pb2.RecordTradeExecutedRequest, context: Context
    ) -> ledger_pb2.RecordTradeExecutedResponse:
        result = await self._record_one(context, request.event, "trade_executed")
        return ledger_pb2.RecordTradeExecutedResponse(result=result)

    @_rpc
    async def RecordFundsReserved(  # noqa: N802
        self, request: ledger_pb2.RecordFundsReservedRequest, context: Context
    ) -> ledger_pb2.RecordFundsReservedResponse:
        result = await self._record_one(context, request.event, "funds_reserved")
        return ledger_pb2.RecordFundsReservedResponse(result=result)

    @_rpc
    async def RecordFundsReleased(  # noqa: N802
        self, request: ledger_pb2.RecordFundsReleasedRequest, context: Context
    ) -> ledger_pb2.RecordFundsReleasedResponse:
        result = await self._record_one(context, request.event, "funds_released")
        return ledger_pb2.RecordFundsReleasedResponse(result=result)

    @_rpc
    async def IngestEvents(  # noqa: N802
        self, request: ledger_pb2.IngestEventsRequest, context: Context
    ) -> ledger_pb2.IngestEventsResponse:
        _operator(context)
        results = await self._settlement.post(list(request.events))
        return ledger_pb2.IngestEventsResponse(results=[_result(r) for r in results])

    @_rpc
    async def ReportEngineSeq(  # noqa: N802
        self, request: ledger_pb2.ReportEngineSeqRequest, context: Context
    ) -> ledger_pb2.ReportEngineSeqResponse:
        _operator(context)
        ledger_engine_seq = await self._reconciliation.report_engine_seq(
            shard_id=request.shard_id,
            epoch=request.epoch,
            engine_seq=request.engine_seq,
            market_seqs=dict(request.market_seqs),
        )
        return ledger_pb2.ReportEngineSeqResponse(ledger_engine_seq=ledger_engine_seq)

    @_rpc
    async def ListBalances(  # noqa: N802
        self, request: ledger_pb2.ListBalancesRequest, context: Context
    ) -> ledger_pb2.ListBalancesResponse:
        if _header(context, OPERATOR_HEADER):
            owner_id = request.owner_id
        else:
            owner_id = _header(context, ACCOUNT_HEADER)
            if not owner_id:
                raise LedgerError(Reason.PERMISSION_DENIED, "no caller identity")
            if request.owner_id and request.owner_id != owner_id:
                raise LedgerError(Reason.PERMISSION_DENIED, "traders see their own balances")
        balances, token = await read_model.list_balances(
            self._engine,
            owner_id=owner_id,
            asset=request.asset,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return ledger_pb2.ListBalancesResponse(
            balances=[
                types_pb2.LedgerBalance(
                    account=account_message(b.account),
                    balance=b.balance,
                    last_engine_seq=b.last_engine_seq,
                )
                for b in balances
            ],
            next_page_token=token,
        )

    @_rpc
    async def ListEntries(  # noqa: N802
        self, request: ledger_pb2.ListEntriesRequest, context: Context
    ) -> ledger_pb2.ListEntriesResponse:
        _operator(context)
        kind = None if request.kind == 0 else EntryKind(request.kind)
        entries, token = await read_model.list_entries(
            self._engine,
            owner_id=request.owner_id,
            asset=request.asset,
            kind=kind,
            reference=request.reference,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return ledger_pb2.ListEntriesResponse(
            entries=[entry_message(e) for e in entries], next_page_token=token
        )

    @_rpc
    async def GetEntry(  # noqa: N802
        self, request: ledger_pb2.GetEntryRequest, context: Context
    ) -> ledger_pb2.GetEntryResponse:
        _operator(context)
        entry = await read_model.get_entry(self._engine, _entry_id(request.entry_id, "entry_id"))
        return ledger_pb2.GetEntryResponse(entry=entry_message(entry))

    @_rpc
    async def RebuildBalances(  # noqa: N802
        self, request: ledger_pb2.RebuildBalancesRequest, context: Context
    ) -> ledger_pb2.RebuildBalancesResponse:
        _operator(context)
        report = await rebuild_balances(self._engine, dry_run=request.dry_run)
        return ledger_pb2.RebuildBalancesResponse(
            accounts_rebuilt=report.accounts_rebuilt,
            differences=[
                types_pb2.BalanceDifference(
                    account=account_message(d.account), expected=d.expected, actual=d.actual
                )
                for d in report.differences
            ],
        )

    @_rpc
    async def CheckInvariants(  # noqa: N802
        self, _request: ledger_pb2.CheckInvariantsRequest, context: Context
    ) -> ledger_pb2.CheckInvariantsResponse:
        _operator(context)
        violations = await check_invariants(self._engine)
        response = ledger_pb2.CheckInvariantsResponse(
            ok=not violations,
            violations=[
                types_pb2.InvariantViolation(
                    invariant=v.invariant,
                    detail=v.detail,
                    amount=v.amount,
                    account=None if v.account is None else account_message(v.account),
                )
                for v in violations
            ],
        )
        response.checked_at.GetCurrentTime()
        return response

    @_rpc
    async def GetReconciliation(  # noqa: N802
        self, request: ledger_pb2.GetReconciliationRequest, context: Context
    ) -> ledger_pb2.GetReconciliationResponse:
        _operator(context)
        report = await self._reconciliation.reconcile(
            symbol=request.symbol, at_engine_seq=request.at_engine_seq
        )
        message = reconciliation_message(report, generated_at=datetime.now(UTC))
        return ledger_pb2.GetReconciliationResponse(report=message)

    @_rpc
    async def CreateAdjustment(  # noqa: N802
        self, request: ledger_pb2.CreateAdjustmentRequest, context: Context
    ) -> ledger_pb2.CreateAdjustmentResponse:
        adjustment = await self._adjustments.create(
            operator_id=_operator(context),
            request_id=request.request_id,
            owner_id=request.owner_id,
            asset=request.asset,
            amount=request.amount,
            memo=request.memo,
        )
        return ledger_pb2.CreateAdjustmentResponse(adjustment=_adjustment(adjustment))

    @_rpc
    async def RequestCorrection(  # noqa: N802
        self, request: ledger_pb2.RequestCorrectionRequest, context: Context
    ) -> ledger_pb2.RequestCorrectionResponse:
        operator_id = _operator(context)
        proposal = request.WhichOneof("proposal")
        if proposal == "reverse_entry_id":
            correction = await self._corrections.request(
                operator_id=operator_id,
                request_id=request.request_id,
                reason=request.reason,
                reverse_entry_id=_entry_id(request.reverse_entry_id, "reverse_entry_id"),
            )
        elif proposal == "adjustment":
            correction = await self._corrections.request(
                operator_id=operator_id,
                request_id=request.request_id,
                reason=request.reason,
                postings=[(_account_key(p.account), p.amount) for p in request.adjustment.postings],
            )
        else:
            raise LedgerError(
                Reason.FIELD_INVALID, "a correction needs a proposal", field="proposal"
            )
        return ledger_pb2.RequestCorrectionResponse(correction=correction_message(correction))

    @_rpc
    async def ApproveCorrection(  # noqa: N802
        self, request: ledger_pb2.ApproveCorrectionRequest, context: Context
    ) -> ledger_pb2.ApproveCorrectionResponse:
        correction = await self._corrections.approve(
            operator_id=_operator(context),
            correction_id=request.correction_id,
            comment=request.comment,
        )
        return ledger_pb2.ApproveCorrectionResponse(correction=correction_message(correction))

    @_rpc
    async def RejectCorrection(  # noqa: N802
        self, request: ledger_pb2.RejectCorrectionRequest, context: Context
    ) -> ledger_pb2.RejectCorrectionResponse:
        correction = await self._corrections.reject(
            operator_id=_operator(context),
            correction_id=request.correction_id,
            comment=request.comment,
        )
        return ledger_pb2.RejectCorrectionResponse(correction=correction_message(correction))

    @_rpc
    async def ApplyCorrection(  # noqa: N802
        self, request: ledger_pb2.ApplyCorrectionRequest, context: Context
    ) -> ledger_pb2.ApplyCorrectionResponse:
        correction = await self._corrections.apply(
            operator_id=_operator(context), correction_id=request.correction_id
        )
        return ledger_pb2.ApplyCorrectionResponse(correction=correction_message(correction))

    @_rpc
    async def GetCorrection(  # noqa: N802
        self, request: ledger_pb2.GetCorrectionRequest, context: Context
    ) -> ledger_pb2.GetCorrectionResponse:
        _operator(context)
        correction = await self._corrections.get(request.correction_id)
        return ledger_pb2.GetCorrectionResponse(correction=correction_message(correction))

    @_rpc
    async def ListCorrections(  # noqa: N802
        self, request: ledger_pb2.ListCorrectionsRequest, context: Context
    ) -> ledger_pb2.ListCorrectionsResponse:
        _operator(context)
        status = None if request.status == 0 else CorrectionStatus(request.status)
        corrections, token = await self._corrections.list(
            status=status, page_size=request.page_size, page_token=request.page_token
        )
        return ledger_pb2.ListCorrectionsResponse(
            corrections=[correction_message(c) for c in corrections], next_page_token=token
        )
