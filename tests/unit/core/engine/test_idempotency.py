"""Client order ids are idempotency keys per account, with bounded FIFO memory."""

from __future__ import annotations

from core.engine import (
    CancelOrder,
    Engine,
    EngineConfig,
    OrderStatus,
    RejectReason,
    Side,
)
from core.engine.events import OrderRejected
from core.engine.testing import BTC, USDT, EngineDriver, events_of, limit_order

PRICE = 50_000 * USDT


def test_retry_returns_original_outcome_and_changes_nothing(driver: EngineDriver) -> None:
    command = limit_order("alice", Side.BUY, BTC, PRICE, client_order_id="c-1")
    first = driver.apply(command)
    state_after_first = driver.engine.state_hash()
    retry = driver.apply(command)
    assert retry.duplicate
    assert retry.events == ()
    assert retry.outcome == first.outcome
    assert driver.engine.state_hash() == state_after_first
    assert len(driver.engine.open_orders("alice")) == 1


def test_retry_after_the_order_filled_still_returns_the_original(driver: EngineDriver) -> None:
    command = limit_order("alice", Side.BUY, BTC, PRICE, client_order_id="c-1")
    first = driver.apply(command)
    driver.apply(limit_order("bob", Side.SELL, BTC, PRICE))
    retry = driver.apply(command)
    assert retry.outcome == first.outcome
    assert retry.outcome.status is OrderStatus.NEW
    assert driver.engine.open_orders("alice") == []


def test_same_id_other_parameters_is_duplicate(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.BUY, BTC, PRICE, client_order_id="c-1"))
    balances = driver.engine.all_balances()
    result = driver.apply(limit_order("alice", Side.BUY, 2 * BTC, PRICE, client_order_id="c-1"))
    assert result.outcome.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    (event,) = events_of(result, OrderRejected)
    assert event.client_order_id == "c-1"
    assert driver.engine.all_balances() == balances
    assert len(driver.engine.open_orders("alice")) == 1


def test_same_id_in_another_account_is_independent(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.BUY, BTC, PRICE, client_order_id="c-1"))
    result = driver.apply(limit_order("bob", Side.BUY, BTC, PRICE, client_order_id="c-1"))
    assert result.outcome.accepted
    assert not result.duplicate


def test_rejected_order_retry_returns_the_rejection(driver: EngineDriver) -> None:
    command = limit_order("dave", Side.BUY, BTC, PRICE, client_order_id="c-1")
    first = driver.apply(command)
    assert first.outcome.reason is RejectReason.INSUFFICIENT_BALANCE
    driver.fund("dave", "USDT", 100_000 * USDT)
    retry = driver.apply(command)
    assert retry.duplicate
    assert retry.outcome == first.outcome


def test_memory_is_bounded_with_fifo_eviction() -> None:
    driver = EngineDriver(Engine(EngineConfig(client_order_ids_max_per_account=3)))
    driver.bootstrap_btc_usdt()
    driver.fund("alice", "USDT", 1_000_000 * USDT)
    commands = [
        limit_order("alice", Side.BUY, BTC, PRICE - i * 10_000, client_order_id=f"c-{i}")
        for i in range(4)
    ]
    for command in commands:
        driver.apply(command)
    driver.apply(CancelOrder(account_id="alice", client_order_id="c-0"))
    # c-0 was evicted (oldest of 4 with a bound of 3) and is closed: the id is reusable
    reused = driver.apply(commands[0])
    assert reused.outcome.accepted
    assert not reused.duplicate
    # c-1 was evicted from the table but its order is still live: still a duplicate
    clash = driver.apply(commands[1])
    assert clash.outcome.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    # c-3 is remembered
    assert driver.apply(commands[3]).duplicate


def test_duplicate_does_not_advance_engine_seq_high_water(driver: EngineDriver) -> None:
    command = limit_order("alice", Side.BUY, BTC, PRICE, client_order_id="c-1")
    driver.apply(command)
    last = driver.engine.engine_seq_last
    driver.apply(command)
    assert driver.engine.engine_seq_last == last
