"""Operator adjustments: sent to the core, posted from the core's BalanceAdjusted event.

The ledger never posts an adjustment by itself (docs/adr/0005): `create` records the request
(SUBMITTED), calls `FundingService.CreateBalanceAdjustment` on the core with
`transfer_id = request_id`, and the entry follows when settlement posts the resulting
BalanceAdjusted event (whose transfer id names the adjustment, which becomes POSTED in the
same transaction). A core refusal makes it REJECTED with the core's reason. A retry with the
same request_id and body returns the adjustment as it is now (and re-sends it to the core,
which answers idempotently by transfer_id); another body fails IDEMPOTENCY_KEY_REUSED.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any, Protocol

import grpc
from exchange.common.v1 import errors_pb2
from exchange.funding.v1 import funding_pb2, funding_pb2_grpc
from exchange.ledger.types.v1 import types_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy.ext.asyncio import AsyncEngine

from common.identity_headers import operator_metadata
from ledger.db.connection import DriverConnection, driver_connection
from ledger.errors import LedgerError, Reason
from ledger.journal import INT64_MAX, INT64_MIN


class AdjustmentStatus(IntEnum):
    SUBMITTED = types_pb2.ADJUSTMENT_STATUS_SUBMITTED
    POSTED = types_pb2.ADJUSTMENT_STATUS_POSTED
    REJECTED = types_pb2.ADJUSTMENT_STATUS_REJECTED


@dataclass(frozen=True, slots=True)
class Adjustment:
    adjustment_id: str
    owner_id: str
    asset: str
    amount: int
    memo: str
    status: AdjustmentStatus
    reject_reason: str
    requested_by: str
    requested_at: datetime
    entry_id: int | None


class CoreRejectedError(Exception):
    """The core refused the adjustment; `reason` is its ErrorReason name."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FundingClient(Protocol):
    async def create_balance_adjustment(
        self,
        *,
        transfer_id: str,
        account_id: str,
        asset: str,
        amount: int,
        memo: str,
        operator_id: str,
    ) -> None:
        """Raises CoreRejectedError for a business refusal, LedgerError when unreachable."""


class GrpcFundingClient:
    """FundingClient over a gRPC channel to the core's FundingService."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_seconds: float = 10.0) -> None:
        self._stub = funding_pb2_grpc.FundingServiceStub(channel)
        self._timeout_seconds = timeout_seconds

    async def create_balance_adjustment(
        self,
        *,
        transfer_id: str,
        account_id: str,
        asset: str,
        amount: int,
        memo: str,
        operator_id: str,
    ) -> None:
        request = funding_pb2.CreateBalanceAdjustmentRequest(
            transfer_id=transfer_id, account_id=account_id, asset=asset, amount=amount, memo=memo
        )
        try:
            response = await self._stub.CreateBalanceAdjustment(
                request,
                metadata=operator_metadata(operator_id),
                timeout=self._timeout_seconds,
            )
        except grpc.aio.AioRpcError as error:
            reason = _error_reason(error)
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise LedgerError(
                    Reason.DEPENDENCY_UNAVAILABLE,
                    f"the core did not answer: {error.details()}",
                    dependency="core",
                ) from error
            raise CoreRejectedError(reason or error.code().name, error.details() or "") from error
        if response.transfer.status == funding_pb2.TRANSFER_STATUS_REJECTED:
            reason_name = errors_pb2.ErrorReason.Name(response.transfer.reject_reason)
            raise CoreRejectedError(reason_name.removeprefix("ERROR_REASON_"), "rejected")


def _error_reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    if status is None:
        return ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


_COLUMNS = (
    "adjustment_id, owner_id, asset, amount, memo, status, reject_reason, requested_by, "
    "requested_at, entry_id"
)


def _adjustment(row: Any) -> Adjustment:
    return Adjustment(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        AdjustmentStatus(row[5]),
        row[6],
        row[7],
        row[8],
        row[9],
    )


class Adjustments:
    def __init__(self, engine: AsyncEngine, funding: FundingClient) -> None:
        self._engine = engine
        self._funding = funding

    async def create(
        self,
        *,
        operator_id: str,
        request_id: str,
        owner_id: str,
        asset: str,
        amount: int,
        memo: str,
    ) -> Adjustment:
        if not operator_id:
            raise LedgerError(Reason.OPERATOR_REQUIRED, "an operator identity is required")
        if not request_id:
            raise LedgerError(Reason.IDEMPOTENCY_KEY_MISSING, "request_id is required")
        for name, value in (("owner_id", owner_id), ("asset", asset), ("memo", memo)):
            if not value.strip():
                raise LedgerError(Reason.FIELD_INVALID, f"{name} is required", field=name)
        if amount == 0 or not INT64_MIN <= amount <= INT64_MAX:
            raise LedgerError(Reason.FIELD_INVALID, "amount must be non-zero int64", field="amount")
        async with self._engine.begin() as sa_connection:
            connection = await driver_connection(sa_connection)
            await connection.execute(
                "INSERT INTO adjustments (adjustment_id, owner_id, asset, amount, memo, status, "
                "requested_by) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (adjustment_id) DO NOTHING",
                (
                    request_id,
                    owner_id,
                    asset,
                    amount,
                    memo,
                    int(AdjustmentStatus.SUBMITTED),
                    operator_id,
                ),
            )
            existing = await _load(connection, request_id)
        if (existing.owner_id, existing.asset, existing.amount, existing.memo) != (
            owner_id,
            asset,
            amount,
            memo,
        ):
            raise LedgerError(
                Reason.IDEMPOTENCY_KEY_REUSED,
                f"request_id {request_id!r} was used for another adjustment",
            )
        if existing.status is not AdjustmentStatus.SUBMITTED:
            return existing
        try:
            await self._funding.create_balance_adjustment(
                transfer_id=request_id,
                account_id=owner_id,
                asset=asset,
                amount=amount,
                memo=memo,
                operator_id=operator_id,
            )
        except CoreRejectedError as rejected:
            async with self._engine.begin() as sa_connection:
                connection = await driver_connection(sa_connection)
                await connection.execute(
                    "UPDATE adjustments SET status = %s, reject_reason = %s "
                    "WHERE adjustment_id = %s AND status = %s",
                    (
                        int(AdjustmentStatus.REJECTED),
                        rejected.reason,
                        request_id,
                        int(AdjustmentStatus.SUBMITTED),
                    ),
                )
                return await _load(connection, request_id)
        async with self._engine.begin() as sa_connection:
            connection = await driver_connection(sa_connection)
            # The event may have been posted before this row existed: link it now.
            await connection.execute(
                "UPDATE adjustments SET status = %s, entry_id = e.entry_id FROM journal_entries "
                "AS e WHERE adjustments.adjustment_id = %s AND adjustments.status = %s "
                "AND e.kind = 6 AND e.transfer_id = adjustments.adjustment_id",
                (int(AdjustmentStatus.POSTED), request_id, int(AdjustmentStatus.SUBMITTED)),
            )
            return await _load(connection, request_id)


async def _load(connection: DriverConnection, adjustment_id: str) -> Adjustment:
    cursor = await connection.execute(
        f"SELECT {_COLUMNS} FROM adjustments WHERE adjustment_id = %s",  # noqa: S608
        (adjustment_id,),
    )
    row = await cursor.fetchone()
    if row is None:
        raise LedgerError(Reason.INTERNAL, f"adjustment {adjustment_id!r} vanished")
    return _adjustment(row)
