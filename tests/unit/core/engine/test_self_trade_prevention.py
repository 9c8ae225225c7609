"""Self-trade prevention modes act on the incoming (taker) order's mode."""

from __future__ import annotations

from core.engine import CancelReason, OrderStatus, SelfTradePrevention, Side, TimeInForce
from core.engine.events import OrderCancelled, TradeExecuted
from core.engine.testing import BTC, USDT, EngineDriver, events_of, limit_order, market_order

PRICE = 50_000 * USDT


def setup_book(driver: EngineDriver) -> tuple[int, int]:
    """alice rests 1 BTC at PRICE, then bob rests 1 BTC behind her; returns their ids."""
    own = driver.apply(limit_order("alice", Side.SELL, BTC, PRICE)).outcome.order_id
    other = driver.apply(limit_order("bob", Side.SELL, BTC, PRICE)).outcome.order_id
    return own, other


def test_cancel_newest_cancels_the_taker_remainder(driver: EngineDriver) -> None:
    own, _ = setup_book(driver)
    result = driver.apply(limit_order("alice", Side.BUY, 2 * BTC, PRICE))
    assert events_of(result, TradeExecuted) == []
    (cancelled,) = events_of(result, OrderCancelled)
    assert cancelled.order_id == result.outcome.order_id
    assert cancelled.reason is CancelReason.SELF_TRADE_PREVENTION
    assert cancelled.quantity_cancelled == 2 * BTC
    assert result.outcome.status is OrderStatus.CANCELLED
    assert driver.engine.order(own) is not None  # the resting order is untouched
    assert driver.engine.balance("alice", "USDT").held == 0
    driver.engine.check_invariants()


def test_cancel_newest_after_partial_fill(driver: EngineDriver) -> None:
    other = driver.apply(limit_order("bob", Side.SELL, BTC, PRICE)).outcome.order_id
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    result = driver.apply(limit_order("alice", Side.BUY, 3 * BTC, PRICE))
    (trade,) = events_of(result, TradeExecuted)
    assert trade.maker_order_id == other
    (cancelled,) = events_of(result, OrderCancelled)
    assert cancelled.quantity_cancelled == 2 * BTC
    assert result.outcome.filled_quantity == BTC


def test_cancel_oldest_cancels_resting_and_continues(driver: EngineDriver) -> None:
    own, other = setup_book(driver)
    result = driver.apply(
        limit_order(
            "alice",
            Side.BUY,
            BTC,
            PRICE,
            self_trade_prevention=SelfTradePrevention.CANCEL_OLDEST,
        )
    )
    (cancelled,) = events_of(result, OrderCancelled)
    assert (cancelled.order_id, cancelled.reason) == (own, CancelReason.SELF_TRADE_PREVENTION)
    (trade,) = events_of(result, TradeExecuted)
    assert trade.maker_order_id == other
    assert result.outcome.status is OrderStatus.FILLED
    assert driver.engine.order(own) is None
    assert driver.engine.closed_order_status("alice", own) is OrderStatus.CANCELLED
    assert driver.engine.balance("alice", "BTC").held == 0
    driver.engine.check_invariants()


def test_cancel_both(driver: EngineDriver) -> None:
    own, other = setup_book(driver)
    result = driver.apply(
        limit_order(
            "alice", Side.BUY, BTC, PRICE, self_trade_prevention=SelfTradePrevention.CANCEL_BOTH
        )
    )
    assert events_of(result, TradeExecuted) == []
    cancelled = events_of(result, OrderCancelled)
    assert [event.order_id for event in cancelled] == [own, result.outcome.order_id]
    assert all(event.reason is CancelReason.SELF_TRADE_PREVENTION for event in cancelled)
    assert driver.engine.order(other) is not None
    assert driver.engine.open_orders("alice") == []
    driver.engine.check_invariants()


def test_cancel_oldest_empties_a_level_and_continues_to_the_next(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    other = driver.apply(limit_order("bob", Side.SELL, BTC, PRICE + 10_000)).outcome.order_id
    result = driver.apply(
        limit_order(
            "alice",
            Side.BUY,
            BTC,
            PRICE + 10_000,
            self_trade_prevention=SelfTradePrevention.CANCEL_OLDEST,
        )
    )
    (trade,) = events_of(result, TradeExecuted)
    assert (trade.maker_order_id, trade.price) == (other, PRICE + 10_000)
    driver.engine.check_invariants()


def test_market_order_self_trade(driver: EngineDriver) -> None:
    setup_book(driver)
    result = driver.apply(market_order("alice", Side.BUY, quantity=BTC))
    (cancelled,) = events_of(result, OrderCancelled)
    assert cancelled.reason is CancelReason.SELF_TRADE_PREVENTION
    assert driver.engine.balance("alice", "USDT").held == 0


def test_market_buy_cancel_oldest_reserves_cost_past_own_orders(driver: EngineDriver) -> None:
    setup_book(driver)
    result = driver.apply(
        market_order(
            "alice",
            Side.BUY,
            quantity=BTC,
            self_trade_prevention=SelfTradePrevention.CANCEL_OLDEST,
        )
    )
    assert result.outcome.status is OrderStatus.FILLED
    assert len(events_of(result, TradeExecuted)) == 1
    driver.engine.check_invariants()


def test_fok_counts_self_trade_prevention(driver: EngineDriver) -> None:
    setup_book(driver)
    newest = driver.apply(limit_order("alice", Side.BUY, BTC, PRICE, time_in_force=TimeInForce.FOK))
    assert newest.outcome.reason is not None
    oldest = driver.apply(
        limit_order(
            "alice",
            Side.BUY,
            BTC,
            PRICE,
            time_in_force=TimeInForce.FOK,
            self_trade_prevention=SelfTradePrevention.CANCEL_OLDEST,
        )
    )
    assert oldest.outcome.status is OrderStatus.FILLED
