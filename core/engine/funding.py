"""Funding: Deposit, Withdraw and AdjustBalance, the only commands that change an asset's
supply (invariant 5 of core/engine/README.md).

Rules, checked in this order (the first failing one is the outcome; a rejection emits no
event and changes nothing):
- the asset must exist: ASSET_UNKNOWN;
- Deposit: amount > 0 and the supply stays within int64, else AMOUNT_OUT_OF_RANGE;
- Withdraw: 0 < amount <= INT64_MAX, else AMOUNT_OUT_OF_RANGE; amount <= the account's
  available balance, else INSUFFICIENT_BALANCE;
- AdjustBalance: delta != 0, |delta| <= INT64_MAX and the supply stays within int64, else
  AMOUNT_OUT_OF_RANGE; available + delta >= 0, else INSUFFICIENT_BALANCE.
An accepted command moves the account's available balance and the asset's supply by the same
signed amount and emits one event on the account stream. Idempotency by (account,
transfer_id) is the engine's: its table is engine state.
"""

from __future__ import annotations

from core.engine.balances import Balance
from core.engine.commands import AdjustBalance, Deposit, FundingCommand, Withdraw
from core.engine.enums import RejectReason
from core.engine.errors import EngineInvariantError
from core.engine.events import BalanceAdjusted, Event, FundsDeposited, FundsWithdrawn
from core.engine.money import INT64_MAX


def funding_reason(  # noqa: PLR0911  (one guard per named rejection)
    command: FundingCommand,
    asset_supply: dict[str, int],
    balances: dict[tuple[str, str], Balance],
) -> RejectReason | None:
    """Why `command` is rejected, or None. `asset_supply` has a key for every asset."""
    asset = command.asset
    if asset not in asset_supply:
        return RejectReason.ASSET_UNKNOWN
    if isinstance(command, Deposit):
        if command.amount <= 0:
            return RejectReason.AMOUNT_OUT_OF_RANGE
        return _supply_change_reason(asset_supply[asset], command.amount)
    if isinstance(command, Withdraw):
        if not 0 < command.amount <= INT64_MAX:
            return RejectReason.AMOUNT_OUT_OF_RANGE
        cell = balances.get((command.account_id, asset))
        if cell is None or cell.available < command.amount:
            return RejectReason.INSUFFICIENT_BALANCE
        return None
    reason = _supply_change_reason(asset_supply[asset], command.delta)
    if reason is not None:
        return reason
    cell = balances.get((command.account_id, asset))
    available = 0 if cell is None else cell.available
    if available + command.delta < 0:
        return RejectReason.INSUFFICIENT_BALANCE
    return None


def _supply_change_reason(supply: int, delta: int) -> RejectReason | None:
    if delta == 0 or abs(delta) > INT64_MAX:
        return RejectReason.AMOUNT_OUT_OF_RANGE
    if supply + delta > INT64_MAX:
        return RejectReason.AMOUNT_OUT_OF_RANGE
    return None


def supply_delta(command: FundingCommand) -> int:
    """The signed amount an accepted command adds to the balance and the supply."""
    if isinstance(command, Deposit):
        return command.amount
    if isinstance(command, Withdraw):
        return -command.amount
    return command.delta


def move_supply(cell: Balance, asset_supply: dict[str, int], delta: int) -> None:
    """Add `delta` to the cell's available balance and to its asset's supply."""
    asset = cell.asset
    cell.available += delta
    asset_supply[asset] += delta
    if cell.available < 0 or asset_supply[asset] < 0:
        raise EngineInvariantError(f"funding made a balance negative: {cell!r}")


def funding_event(command: FundingCommand, seq: int, engine_seq: int, timestamp_ns: int) -> Event:
    """The account-stream event of an accepted command, numbered `seq`."""
    if isinstance(command, AdjustBalance):
        return BalanceAdjusted(
            symbol="",
            seq=seq,
            engine_seq=engine_seq,
            timestamp_ns=timestamp_ns,
            account_id=command.account_id,
            asset=command.asset,
            delta=command.delta,
            transfer_id=command.transfer_id,
            memo=command.memo,
        )
    event_type = FundsDeposited if isinstance(command, Deposit) else FundsWithdrawn
    return event_type(
        symbol="",
        seq=seq,
        engine_seq=engine_seq,
        timestamp_ns=timestamp_ns,
        account_id=command.account_id,
        asset=command.asset,
        amount=command.amount,
        transfer_id=command.transfer_id,
    )
