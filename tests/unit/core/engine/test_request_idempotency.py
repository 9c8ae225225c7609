"""Idempotency by request_id of cancel, cancel-all, amend and market mode (ADR 0016)."""

from __future__ import annotations

import json

from core.engine import (
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Engine,
    EngineConfig,
    MarketMode,
    OrderStatus,
    RejectReason,
    SetMarketMode,
    Side,
)
from core.engine.testing import BTC, USDT, EngineDriver, limit_order

PRICE = 50_000 * USDT
TICK = USDT // 100


def rest(driver: EngineDriver, account_id: str, side: Side, quantity: int, price: int) -> int:
    result = driver.apply(limit_order(account_id, side, quantity, price))
    assert result.outcome.accepted
    return result.outcome.order_id


def test_retried_cancel_returns_the_first_outcome_and_applies_nothing(
    driver: EngineDriver,
) -> None:
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    cancel = CancelOrder(account_id="alice", order_id=order_id, request_id="k-1")
    first = driver.apply(cancel)
    assert first.outcome.status is OrderStatus.CANCELLED
    hash_after_first = driver.engine.state_hash()
    seq_after_first = driver.engine.engine_seq_last
    again = driver.apply(cancel)
    assert again.duplicate
    assert again.events == ()
    assert again.outcome == first.outcome  # not ORDER_NOT_OPEN
    assert driver.engine.engine_seq_last == seq_after_first
    assert driver.engine.state_hash() == hash_after_first


def test_unkeyed_cancel_is_not_remembered(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    cancel = CancelOrder(account_id="alice", order_id=order_id)
    assert driver.apply(cancel).outcome.accepted
    assert driver.apply(cancel).outcome.reason is RejectReason.ORDER_NOT_OPEN


def test_same_key_other_command_is_refused_and_not_remembered(driver: EngineDriver) -> None:
    first_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    second_id = rest(driver, "alice", Side.BUY, BTC, PRICE - TICK)
    assert driver.apply(
        CancelOrder(account_id="alice", order_id=first_id, request_id="k")
    ).outcome.accepted
    other_order = driver.apply(CancelOrder(account_id="alice", order_id=second_id, request_id="k"))
    assert other_order.outcome.reason is RejectReason.IDEMPOTENCY_KEY_REUSED
    other_kind = driver.apply(CancelAllOrders(account_id="alice", request_id="k"))
    assert other_kind.outcome.reason is RejectReason.IDEMPOTENCY_KEY_REUSED
    assert driver.engine.order(second_id) is not None  # nothing applied
    # The key still answers its first command.
    assert driver.apply(
        CancelOrder(account_id="alice", order_id=first_id, request_id="k")
    ).duplicate


def test_keys_are_per_account(driver: EngineDriver) -> None:
    alice_order = rest(driver, "alice", Side.BUY, BTC, PRICE)
    bob_order = rest(driver, "bob", Side.BUY, BTC, PRICE)
    assert driver.apply(
        CancelOrder(account_id="alice", order_id=alice_order, request_id="k")
    ).outcome.accepted
    bob = driver.apply(CancelOrder(account_id="bob", order_id=bob_order, request_id="k"))
    assert bob.outcome.accepted
    assert not bob.duplicate


def test_an_original_rejection_is_returned_again(driver: EngineDriver) -> None:
    cancel = CancelOrder(account_id="alice", order_id=999, request_id="k")
    first = driver.apply(cancel)
    assert first.outcome.reason is RejectReason.ORDER_NOT_FOUND
    again = driver.apply(cancel)
    assert again.duplicate
    assert again.outcome == first.outcome


def test_retried_amend_keeps_the_first_answer_after_the_order_moved(
    driver: EngineDriver,
) -> None:
    order_id = rest(driver, "alice", Side.SELL, 2 * BTC, PRICE)
    amend = AmendOrder(
        account_id="alice", order_id=order_id, price=0, quantity=BTC, request_id="a-1"
    )
    first = driver.apply(amend)
    assert first.outcome.accepted
    assert first.outcome.priority_kept
    # The order is partly filled afterwards; a retry must not amend again or differ.
    assert driver.apply(limit_order("bob", Side.BUY, BTC // 2, PRICE)).outcome.accepted
    hash_before_retry = driver.engine.state_hash()
    again = driver.apply(amend)
    assert again.duplicate
    assert again.outcome == first.outcome
    assert driver.engine.state_hash() == hash_before_retry


def test_retried_cancel_all_returns_what_it_cancelled(driver: EngineDriver) -> None:
    ids = [rest(driver, "alice", Side.BUY, BTC, PRICE - n * TICK) for n in range(3)]
    cancel_all = CancelAllOrders(account_id="alice", symbol="BTC-USDT", request_id="all-1")
    first = driver.apply(cancel_all)
    assert first.outcome.cancelled_order_ids == tuple(ids)
    later = rest(driver, "alice", Side.BUY, BTC, PRICE)
    again = driver.apply(cancel_all)
    assert again.duplicate
    assert again.outcome.cancelled_order_ids == tuple(ids)
    assert driver.engine.order(later) is not None  # the retry cancelled nothing new


def test_market_mode_keys_are_per_operator(driver: EngineDriver) -> None:
    halt = SetMarketMode(
        symbol="BTC-USDT", mode=MarketMode.HALTED, operator_id="op-1", request_id="m"
    )
    assert driver.apply(halt).outcome.accepted
    resume = SetMarketMode(
        symbol="BTC-USDT", mode=MarketMode.NORMAL, operator_id="op-1", request_id="n"
    )
    assert driver.apply(resume).outcome.accepted
    again = driver.apply(halt)
    assert again.duplicate
    assert driver.engine.market("BTC-USDT").mode is MarketMode.NORMAL  # type: ignore[union-attr]
    other = driver.apply(
        SetMarketMode(symbol="BTC-USDT", mode=MarketMode.NORMAL, operator_id="op-1", request_id="m")
    )
    assert other.outcome.reason is RejectReason.IDEMPOTENCY_KEY_REUSED
    # Another operator's "m" is its own key, and an account's "m" is not an operator's.
    assert not driver.apply(
        SetMarketMode(symbol="BTC-USDT", mode=MarketMode.NORMAL, operator_id="op-2", request_id="m")
    ).duplicate


def test_the_window_evicts_the_oldest_key_of_the_account() -> None:
    driver = EngineDriver(Engine(EngineConfig(request_ids_max_per_account=2)))
    driver.bootstrap_btc_usdt()
    driver.fund("alice", "USDT", 1_000_000 * USDT)
    ids = [rest(driver, "alice", Side.BUY, BTC, PRICE - n * TICK) for n in range(3)]
    cancels = [
        CancelOrder(account_id="alice", order_id=order_id, request_id=f"k{n}")
        for n, order_id in enumerate(ids)
    ]
    for cancel in cancels:
        assert driver.apply(cancel).outcome.accepted
    assert driver.apply(cancels[2]).duplicate
    assert driver.apply(cancels[1]).duplicate
    evicted = driver.apply(cancels[0])  # forgotten: a new request, answered by the state
    assert not evicted.duplicate
    assert evicted.outcome.reason is RejectReason.ORDER_NOT_OPEN


def test_the_table_survives_a_snapshot_round_trip(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.SELL, 2 * BTC, PRICE)
    amend = AmendOrder(account_id="alice", order_id=order_id, price=0, quantity=BTC, request_id="a")
    first = driver.apply(amend)
    halt = SetMarketMode(
        symbol="BTC-USDT", mode=MarketMode.CANCEL_ONLY, operator_id="op", request_id="m"
    )
    assert driver.apply(halt).outcome.accepted
    restored = Engine.from_snapshot(driver.engine.snapshot())
    assert restored.state_hash() == driver.engine.state_hash()
    again = EngineDriver(restored)
    assert again.apply(amend).outcome == first.outcome
    assert again.apply(halt).duplicate


def test_a_format_1_snapshot_still_restores(driver: EngineDriver) -> None:
    """Snapshots written before request ids were kept: no tables, no priority_kept."""
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    state = json.loads(driver.engine.snapshot())
    assert state["format_version"] == 2
    state["format_version"] = 1
    del state["command_requests"], state["operator_requests"]
    del state["config"]["request_ids_max_per_account"]
    for _, entries in state["order_requests"] + state["transfer_requests"]:
        for entry in entries:
            del entry[-1]["priority_kept"]
    restored = Engine.from_snapshot(json.dumps(state).encode())
    assert restored.order(order_id) == driver.engine.order(order_id)
    assert restored.config == driver.engine.config  # the default window
    assert restored.state_hash() == driver.engine.state_hash()  # nothing was lost
