"""exchange.funding.v1.FundingService: deposits, withdrawals, adjustments (docs/adr/0005).

Every funding call is a command through the same command intake and WAL as orders. Deposits and
adjustments need an operator (`x-exchange-operator-id`); a withdrawal is the calling trader's.
`transfer_id` is the engine's durable idempotency key: a retry returns the original transfer
(a rejected one again as its error), another body IDEMPOTENCY_KEY_REUSED. A rejection is the
call's error and is also remembered as a REJECTED transfer. GetTransfer / ListTransfers show
the caller's transfers (operators: any account's) from the in-memory window.
"""

from __future__ import annotations

from typing import Final

from exchange.common.v1 import errors_pb2
from exchange.funding.v1 import funding_pb2, funding_pb2_grpc

from core.contracts import funding, validation
from core.service.errors import ServiceError
from core.service.identity import Context, caller_account, caller_operator, optional_operator
from core.service.paging import fill_page
from core.service.rpc import unary
from core.service.runtime import CoreRuntime

_TRANSFER_NOT_FOUND: Final = errors_pb2.ERROR_REASON_TRANSFER_NOT_FOUND


class FundingServicer(funding_pb2_grpc.FundingServiceServicer):
    def __init__(self, runtime: CoreRuntime) -> None:
        self._runtime = runtime

    async def _transfer(
        self, command: funding.FundingCommand, *, reference: str, operator_id: str
    ) -> funding_pb2.Transfer:
        runtime = self._runtime
        result = await runtime.intake.submit_one(command)
        transfer = None
        if result.duplicate:
            transfer = runtime.transfers.get(command.account_id, command.transfer_id)
        if transfer is None:
            transfer = funding.transfer_message(
                command,
                result.outcome,
                reference=reference,
                operator_id=operator_id,
                created_ns=runtime.clock(),
            )
            runtime.transfers.add(transfer)
        if result.outcome.reason is not None:
            raise ServiceError.rejected(
                result.outcome.reason,
                {"transfer_id": command.transfer_id, "asset": command.asset},
            )
        return transfer

    @unary
    async def CreateDeposit(  # noqa: N802
        self, request: funding_pb2.CreateDepositRequest, context: Context
    ) -> funding_pb2.CreateDepositResponse:
        operator_id = caller_operator(context)
        transfer = await self._transfer(
            funding.deposit(request), reference=request.reference, operator_id=operator_id
        )
        return funding_pb2.CreateDepositResponse(transfer=transfer)

    @unary
    async def CreateWithdrawal(  # noqa: N802
        self, request: funding_pb2.CreateWithdrawalRequest, context: Context
    ) -> funding_pb2.CreateWithdrawalResponse:
        account_id = caller_account(context)
        transfer = await self._transfer(
            funding.withdrawal(account_id, request), reference=request.reference, operator_id=""
        )
        return funding_pb2.CreateWithdrawalResponse(transfer=transfer)

    @unary
    async def CreateBalanceAdjustment(  # noqa: N802
        self, request: funding_pb2.CreateBalanceAdjustmentRequest, context: Context
    ) -> funding_pb2.CreateBalanceAdjustmentResponse:
        operator_id = caller_operator(context)
        transfer = await self._transfer(
            funding.adjustment(request), reference="", operator_id=operator_id
        )
        return funding_pb2.CreateBalanceAdjustmentResponse(transfer=transfer)

    @unary
    async def GetTransfer(  # noqa: N802
        self, request: funding_pb2.GetTransferRequest, context: Context
    ) -> funding_pb2.GetTransferResponse:
        transfer_id = validation.idempotency_key(
            request.transfer_id, "transfer_id", validation.TRANSFER_ID_LENGTH_MAX
        )
        transfers = self._runtime.transfers
        if optional_operator(context):
            transfer = transfers.find(transfer_id)
        else:
            transfer = transfers.get(caller_account(context), transfer_id)
        if transfer is None:
            raise ServiceError(
                _TRANSFER_NOT_FOUND, "no such transfer", {"transfer_id": transfer_id}
            )
        return funding_pb2.GetTransferResponse(transfer=transfer)

    @unary
    async def ListTransfers(  # noqa: N802
        self, request: funding_pb2.ListTransfersRequest, context: Context
    ) -> funding_pb2.ListTransfersResponse:
        if optional_operator(context):
            account_id = validation.optional_text(
                request.account_id, "account_id", validation.ACCOUNT_ID_LENGTH_MAX
            )
        else:
            account_id = caller_account(context)
        asset = validation.optional_asset(request.asset)
        kind = funding.transfer_kind(request.kind)
        page_size = validation.page_size(request.page_size)
        below_seq = validation.page_cursor(request.page_token)
        response = funding_pb2.ListTransfersResponse()
        selected = (
            transfer
            for transfer in self._runtime.transfers.newest_first(account_id)
            if (not below_seq or transfer.engine_seq < below_seq)
            and (not asset or transfer.asset == asset)
            and (not kind or transfer.kind == kind)
        )
        response.next_page_token = fill_page(
            selected, page_size, lambda transfer: transfer.engine_seq, response.transfers.append
        )
        return response
