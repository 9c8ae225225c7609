"""Funding requests -> engine commands, and transfers -> `exchange.funding.v1.Transfer`.

Deposits and adjustments name the account (operators call them); a withdrawal is always the
caller's own. `transfer_id` is the idempotency key (IDEMPOTENCY_KEY_MISSING without it);
amounts are positive minor units (an adjustment's is signed and non-zero); an adjustment needs
a memo. The engine checks asset existence, balances and int64 bounds by name.
"""

from __future__ import annotations

from typing import Final

from exchange.funding.v1 import funding_pb2

from core.contracts import validation
from core.contracts.errors import field_invalid, rejection_reason
from core.engine import AdjustBalance, Deposit, Outcome, Withdraw

FundingCommand = Deposit | Withdraw | AdjustBalance

_AMOUNT_FIELD: Final = "amount"


def _transfer_id(value: str) -> str:
    return validation.idempotency_key(value, "transfer_id", validation.TRANSFER_ID_LENGTH_MAX)


def deposit(request: funding_pb2.CreateDepositRequest) -> Deposit:
    transfer_id = _transfer_id(request.transfer_id)
    validation.optional_text(request.reference, "reference")
    return Deposit(
        account_id=validation.account_id(request.account_id),
        asset=validation.asset(request.asset),
        amount=validation.positive_amount(request.amount, _AMOUNT_FIELD),
        transfer_id=transfer_id,
    )


def withdrawal(account_id: str, request: funding_pb2.CreateWithdrawalRequest) -> Withdraw:
    transfer_id = _transfer_id(request.transfer_id)
    validation.optional_text(request.reference, "reference")
    return Withdraw(
        account_id=account_id,
        asset=validation.asset(request.asset),
        amount=validation.positive_amount(request.amount, _AMOUNT_FIELD),
        transfer_id=transfer_id,
    )


def adjustment(request: funding_pb2.CreateBalanceAdjustmentRequest) -> AdjustBalance:
    transfer_id = _transfer_id(request.transfer_id)
    if request.amount == 0:
        raise field_invalid(_AMOUNT_FIELD, "an adjustment's amount must not be zero")
    return AdjustBalance(
        account_id=validation.account_id(request.account_id),
        asset=validation.asset(request.asset),
        delta=request.amount,
        transfer_id=transfer_id,
        memo=validation.required_text(request.memo, "memo", validation.TEXT_LENGTH_MAX),
    )


_KINDS: Final = {
    Deposit: funding_pb2.TRANSFER_KIND_DEPOSIT,
    Withdraw: funding_pb2.TRANSFER_KIND_WITHDRAWAL,
    AdjustBalance: funding_pb2.TRANSFER_KIND_ADJUSTMENT,
}


def transfer_message(
    command: FundingCommand,
    outcome: Outcome,
    *,
    reference: str,
    operator_id: str,
    created_ns: int,
) -> funding_pb2.Transfer:
    """The transfer a funding command made (or the rejected one, with its reason)."""
    if isinstance(command, AdjustBalance):
        amount, memo = command.delta, command.memo
    else:
        amount, memo = command.amount, ""
    transfer = funding_pb2.Transfer(
        transfer_id=command.transfer_id,
        account_id=command.account_id,
        asset=command.asset,
        kind=_KINDS[type(command)],
        amount=amount,
        status=funding_pb2.TRANSFER_STATUS_COMPLETED,
        reference=reference,
        memo=memo,
        operator_id=operator_id,
        engine_seq=outcome.engine_seq,
    )
    if outcome.reason is not None:
        transfer.status = funding_pb2.TRANSFER_STATUS_REJECTED
        transfer.reject_reason = rejection_reason(outcome.reason)
    transfer.created_at.FromNanoseconds(created_ns)
    return transfer


def transfer_kind(number: int) -> int:
    """A ListTransfers kind filter: 0 (any) or a known kind."""
    if number not in funding_pb2.TransferKind.values():
        raise field_invalid("kind", "kind is unknown")
    return number


__all__ = [
    "FundingCommand",
    "adjustment",
    "deposit",
    "transfer_kind",
    "transfer_message",
    "withdrawal",
]
