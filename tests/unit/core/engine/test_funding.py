"""Deposit, Withdraw, AdjustBalance and transfer-id idempotency."""

from __future__ import annotations

import pytest

from core.engine import AdjustBalance, Deposit, RejectReason, Side, Withdraw
from core.engine.events import BalanceAdjusted, FundsDeposited, FundsWithdrawn
from core.engine.money import INT64_MAX
from core.engine.testing import BTC, USDT, EngineDriver, events_of, limit_order


def test_deposit(driver: EngineDriver) -> None:
    seq = driver.engine.account_stream_seq()
    result = driver.apply(Deposit(account_id="dave", asset="BTC", amount=BTC, transfer_id="t1"))
    (event,) = events_of(result, FundsDeposited)
    assert (event.symbol, event.seq, event.amount, event.transfer_id) == ("", seq + 1, BTC, "t1")
    assert driver.engine.balance("dave", "BTC").available == BTC
    assert driver.engine.asset_supply("BTC") == 301 * BTC


def test_withdraw(driver: EngineDriver) -> None:
    result = driver.apply(Withdraw(account_id="alice", asset="BTC", amount=BTC, transfer_id="w1"))
    (event,) = events_of(result, FundsWithdrawn)
    assert event.amount == BTC
    assert driver.engine.balance("alice", "BTC").available == 99 * BTC


def test_withdraw_cannot_touch_held_funds(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, 100 * BTC, 50_000 * USDT))
    result = driver.apply(Withdraw(account_id="alice", asset="BTC", amount=1, transfer_id="w"))
    assert result.outcome.reason is RejectReason.INSUFFICIENT_BALANCE
    assert result.events == ()


def test_adjust_balance(driver: EngineDriver) -> None:
    result = driver.apply(
        AdjustBalance(account_id="alice", asset="USDT", delta=-5, transfer_id="a1", memo="fix")
    )
    (event,) = events_of(result, BalanceAdjusted)
    assert (event.delta, event.memo) == (-5, "fix")
    assert driver.engine.balance("alice", "USDT").available == 1_000_000 * USDT - 5
    result = driver.apply(
        AdjustBalance(account_id="alice", asset="USDT", delta=5, transfer_id="a2")
    )
    assert result.outcome.accepted


def test_adjust_cannot_make_available_negative(driver: EngineDriver) -> None:
    result = driver.apply(
        AdjustBalance(account_id="dave", asset="USDT", delta=-1, transfer_id="a1")
    )
    assert result.outcome.reason is RejectReason.INSUFFICIENT_BALANCE


@pytest.mark.parametrize(
    "command",
    [
        Deposit(account_id="dave", asset="BTC", amount=0, transfer_id="x"),
        Deposit(account_id="dave", asset="BTC", amount=-1, transfer_id="x"),
        Deposit(account_id="dave", asset="BTC", amount=INT64_MAX, transfer_id="x"),  # supply
        Withdraw(account_id="alice", asset="BTC", amount=0, transfer_id="x"),
        Withdraw(account_id="alice", asset="BTC", amount=INT64_MAX + 1, transfer_id="x"),
        AdjustBalance(account_id="alice", asset="BTC", delta=0, transfer_id="x"),
        AdjustBalance(account_id="alice", asset="BTC", delta=INT64_MAX + 1, transfer_id="x"),
    ],
)
def test_amount_out_of_range(
    driver: EngineDriver, command: Deposit | Withdraw | AdjustBalance
) -> None:
    result = driver.apply(command)
    assert result.outcome.reason is RejectReason.AMOUNT_OUT_OF_RANGE
    assert result.events == ()


@pytest.mark.parametrize(
    "command",
    [
        Deposit(account_id="dave", asset="DOGE", amount=1, transfer_id="x"),
        Withdraw(account_id="dave", asset="DOGE", amount=1, transfer_id="x"),
        AdjustBalance(account_id="dave", asset="DOGE", delta=1, transfer_id="x"),
    ],
)
def test_unknown_asset(driver: EngineDriver, command: Deposit | Withdraw | AdjustBalance) -> None:
    assert driver.apply(command).outcome.reason is RejectReason.ASSET_UNKNOWN


def test_transfer_retry_returns_original_outcome(driver: EngineDriver) -> None:
    deposit = Deposit(account_id="dave", asset="BTC", amount=BTC, transfer_id="t1")
    first = driver.apply(deposit)
    hash_after_first = driver.engine.state_hash()
    retry = driver.apply(deposit)
    assert retry.duplicate
    assert retry.outcome == first.outcome
    assert retry.events == ()
    assert driver.engine.balance("dave", "BTC").available == BTC
    assert driver.engine.state_hash() == hash_after_first


def test_transfer_id_reused_with_other_body(driver: EngineDriver) -> None:
    driver.apply(Deposit(account_id="dave", asset="BTC", amount=BTC, transfer_id="t1"))
    hash_before = driver.engine.state_hash()
    result = driver.apply(Deposit(account_id="dave", asset="BTC", amount=2 * BTC, transfer_id="t1"))
    assert result.outcome.reason is RejectReason.IDEMPOTENCY_KEY_REUSED
    assert driver.engine.balance("dave", "BTC").available == BTC
    other_kind = driver.apply(
        Withdraw(account_id="dave", asset="BTC", amount=BTC, transfer_id="t1")
    )
    assert other_kind.outcome.reason is RejectReason.IDEMPOTENCY_KEY_REUSED
    assert driver.engine.balance("dave", "BTC").available == BTC
    # only the high-water engine_seq moved
    assert driver.engine.state_hash() != hash_before


def test_rejected_transfer_retry_returns_the_original_rejection(driver: EngineDriver) -> None:
    withdraw = Withdraw(account_id="dave", asset="BTC", amount=BTC, transfer_id="w1")
    assert driver.apply(withdraw).outcome.reason is RejectReason.INSUFFICIENT_BALANCE
    driver.apply(Deposit(account_id="dave", asset="BTC", amount=BTC, transfer_id="d1"))
    retry = driver.apply(withdraw)
    assert retry.duplicate
    assert retry.outcome.reason is RejectReason.INSUFFICIENT_BALANCE


def test_transfer_ids_are_scoped_per_account(driver: EngineDriver) -> None:
    driver.apply(Deposit(account_id="dave", asset="BTC", amount=BTC, transfer_id="t1"))
    result = driver.apply(Deposit(account_id="erin", asset="BTC", amount=BTC, transfer_id="t1"))
    assert result.outcome.accepted
    assert not result.duplicate
