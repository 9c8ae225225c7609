"""Cancel, cancel-all and amend."""

from __future__ import annotations

from core.engine import (
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    CancelReason,
    MarketMode,
    OrderStatus,
    RejectReason,
    SetMarketMode,
    Side,
)
from core.engine.events import (
    FundsReleased,
    FundsReserved,
    OrderAmended,
    OrderCancelled,
    OrderRejected,
    TradeExecuted,
)
from core.engine.testing import BTC, USDT, EngineDriver, events_of, limit_order

PRICE = 50_000 * USDT
TICK = USDT // 100
LOT = BTC // 10_000


def rest(driver: EngineDriver, account_id: str, side: Side, quantity: int, price: int) -> int:
    result = driver.apply(limit_order(account_id, side, quantity, price))
    assert result.outcome.accepted
    return result.outcome.order_id


def test_cancel_by_order_id(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    result = driver.apply(CancelOrder(account_id="alice", order_id=order_id))
    cancelled, released = result.events
    assert isinstance(cancelled, OrderCancelled)
    assert (cancelled.reason, cancelled.quantity_cancelled) == (CancelReason.USER_REQUESTED, BTC)
    assert isinstance(released, FundsReleased)
    assert released.amount == 50_100 * USDT
    assert result.outcome.status is OrderStatus.CANCELLED
    assert driver.engine.balance("alice", "USDT").held == 0
    assert driver.engine.book_depth("BTC-USDT").bids == ()  # type: ignore[union-attr]


def test_cancel_by_client_order_id(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.BUY, BTC, PRICE, client_order_id="c-1"))
    result = driver.apply(CancelOrder(account_id="alice", client_order_id="c-1"))
    assert result.outcome.status is OrderStatus.CANCELLED
    again = driver.apply(CancelOrder(account_id="alice", client_order_id="c-1"))
    assert again.outcome.reason is RejectReason.ORDER_NOT_OPEN


def test_cancel_another_accounts_order_is_not_found(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    result = driver.apply(CancelOrder(account_id="bob", order_id=order_id))
    assert result.outcome.reason is RejectReason.ORDER_NOT_FOUND
    (event,) = events_of(result, OrderRejected)
    assert event.order_id == order_id
    assert driver.engine.order(order_id) is not None


def test_cancel_unknown_order(driver: EngineDriver) -> None:
    result = driver.apply(CancelOrder(account_id="alice", order_id=999_999))
    assert result.outcome.reason is RejectReason.ORDER_NOT_FOUND
    result = driver.apply(CancelOrder(account_id="alice"))
    assert result.outcome.reason is RejectReason.ORDER_NOT_FOUND


def test_cancel_filled_order_is_not_open(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    driver.apply(limit_order("bob", Side.SELL, BTC, PRICE))
    result = driver.apply(CancelOrder(account_id="alice", order_id=order_id))
    assert result.outcome.reason is RejectReason.ORDER_NOT_OPEN


def test_cancel_in_cancel_only_mode_is_allowed(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    driver.apply(SetMarketMode(symbol="BTC-USDT", mode=MarketMode.CANCEL_ONLY))
    assert driver.apply(CancelOrder(account_id="alice", order_id=order_id)).outcome.accepted


def test_cancel_in_halted_market_is_rejected(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    driver.apply(SetMarketMode(symbol="BTC-USDT", mode=MarketMode.HALTED))
    result = driver.apply(CancelOrder(account_id="alice", order_id=order_id))
    assert result.outcome.reason is RejectReason.MARKET_HALTED
    assert driver.engine.order(order_id) is not None


def test_cancel_all(driver: EngineDriver) -> None:
    first = rest(driver, "alice", Side.BUY, BTC, PRICE)
    second = rest(driver, "alice", Side.SELL, BTC, PRICE + TICK)
    kept = rest(driver, "bob", Side.BUY, BTC, PRICE)
    result = driver.apply(CancelAllOrders(account_id="alice"))
    assert result.outcome.cancelled_order_ids == (first, second)
    cancelled = events_of(result, OrderCancelled)
    assert [event.reason for event in cancelled] == [CancelReason.CANCEL_ALL] * 2
    assert driver.engine.open_orders("alice") == []
    assert driver.engine.order(kept) is not None
    driver.engine.check_invariants()


def test_cancel_all_per_market(driver: EngineDriver) -> None:
    rest(driver, "alice", Side.BUY, BTC, PRICE)
    result = driver.apply(CancelAllOrders(account_id="alice", symbol="BTC-USDT"))
    assert len(result.outcome.cancelled_order_ids) == 1
    result = driver.apply(CancelAllOrders(account_id="alice", symbol="NOPE"))
    assert result.outcome.reason is RejectReason.SYMBOL_UNKNOWN


def test_cancel_all_with_nothing_open(driver: EngineDriver) -> None:
    result = driver.apply(CancelAllOrders(account_id="alice"))
    assert result.outcome.accepted
    assert result.events == ()


def test_cancel_all_in_halted_market(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    driver.apply(SetMarketMode(symbol="BTC-USDT", mode=MarketMode.HALTED))
    result = driver.apply(CancelAllOrders(account_id="alice", symbol="BTC-USDT"))
    assert result.outcome.reason is RejectReason.MARKET_HALTED
    result = driver.apply(CancelAllOrders(account_id="alice"))  # halted markets are skipped
    assert result.outcome.cancelled_order_ids == ()
    assert driver.engine.order(order_id) is not None


def test_amend_quantity_down_keeps_priority(driver: EngineDriver) -> None:
    first = rest(driver, "alice", Side.BUY, 2 * BTC, PRICE)
    second = rest(driver, "carol", Side.BUY, BTC, PRICE)
    result = driver.apply(AmendOrder(account_id="alice", order_id=first, price=PRICE, quantity=BTC))
    amended, released = result.events
    assert isinstance(amended, OrderAmended)
    assert amended.priority_kept
    assert isinstance(released, FundsReleased)
    assert released.amount == 50_100 * USDT
    trades = events_of(driver.apply(limit_order("bob", Side.SELL, BTC, PRICE)), TradeExecuted)
    assert [trade.maker_order_id for trade in trades] == [first]
    assert driver.engine.order(second) is not None
    driver.engine.check_invariants()


def test_amend_quantity_up_loses_priority_and_reserves_more(driver: EngineDriver) -> None:
    first = rest(driver, "alice", Side.BUY, BTC, PRICE)
    second = rest(driver, "carol", Side.BUY, BTC, PRICE)
    result = driver.apply(
        AmendOrder(account_id="alice", order_id=first, price=PRICE, quantity=2 * BTC)
    )
    amended = events_of(result, OrderAmended)[0]
    assert not amended.priority_kept
    (reserved,) = events_of(result, FundsReserved)
    assert reserved.amount == 50_100 * USDT
    trades = events_of(driver.apply(limit_order("bob", Side.SELL, BTC, PRICE)), TradeExecuted)
    assert [trade.maker_order_id for trade in trades] == [second]
    driver.engine.check_invariants()


def test_amend_price_loses_priority_and_may_trade(driver: EngineDriver) -> None:
    maker = rest(driver, "bob", Side.SELL, BTC, PRICE + 10 * TICK)
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    result = driver.apply(
        AmendOrder(account_id="alice", order_id=order_id, price=PRICE + 10 * TICK, quantity=BTC)
    )
    (trade,) = events_of(result, TradeExecuted)
    assert (trade.maker_order_id, trade.taker_order_id) == (maker, order_id)
    assert result.outcome.status is OrderStatus.FILLED
    assert driver.engine.open_orders("alice") == []
    assert driver.engine.balance("alice", "USDT").held == 0
    driver.engine.check_invariants()


def test_amend_price_down_releases(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    result = driver.apply(
        AmendOrder(account_id="alice", order_id=order_id, price=PRICE - 1_000 * USDT, quantity=BTC)
    )
    (released,) = events_of(result, FundsReleased)
    assert released.amount == 1_002 * USDT
    (view,) = driver.engine.open_orders("alice")
    assert view.price == PRICE - 1_000 * USDT
    assert view.reserved_amount == 49_098 * USDT
    driver.engine.check_invariants()


def test_amend_partially_filled_order(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.SELL, 2 * BTC, PRICE)
    driver.apply(limit_order("bob", Side.BUY, BTC, PRICE))
    result = driver.apply(
        AmendOrder(account_id="alice", order_id=order_id, price=PRICE, quantity=BTC + BTC // 2)
    )
    (amended,) = events_of(result, OrderAmended)
    assert amended.quantity_remaining == BTC // 2
    (view,) = driver.engine.open_orders("alice")
    assert (view.quantity, view.filled_quantity, view.quantity_remaining) == (
        BTC + BTC // 2,
        BTC,
        BTC // 2,
    )
    assert view.status is OrderStatus.PARTIALLY_FILLED
    driver.engine.check_invariants()


def test_amend_to_filled_quantity_is_invalid(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.SELL, 2 * BTC, PRICE)
    driver.apply(limit_order("bob", Side.BUY, BTC, PRICE))
    result = driver.apply(
        AmendOrder(account_id="alice", order_id=order_id, price=PRICE, quantity=BTC)
    )
    assert result.outcome.reason is RejectReason.AMEND_INVALID


def test_amend_post_only_that_would_take_changes_nothing(driver: EngineDriver) -> None:
    rest(driver, "bob", Side.SELL, BTC, PRICE + TICK)
    placed = driver.apply(limit_order("alice", Side.BUY, BTC, PRICE, post_only=True))
    order_id = placed.outcome.order_id
    before = driver.engine.order(order_id)
    result = driver.apply(
        AmendOrder(account_id="alice", order_id=order_id, price=PRICE + TICK, quantity=BTC)
    )
    assert result.outcome.reason is RejectReason.POST_ONLY_WOULD_TAKE
    assert driver.engine.order(order_id) == before


def test_amend_insufficient_balance_changes_nothing(driver: EngineDriver) -> None:
    driver.fund("dave", "BTC", BTC)
    order_id = rest(driver, "dave", Side.SELL, BTC, PRICE)
    result = driver.apply(
        AmendOrder(account_id="dave", order_id=order_id, price=PRICE, quantity=2 * BTC)
    )
    assert result.outcome.reason is RejectReason.INSUFFICIENT_BALANCE
    assert driver.engine.order(order_id).quantity == BTC  # type: ignore[union-attr]


def test_amend_validation(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    cases = [
        (PRICE + 1, BTC, RejectReason.PRICE_TICK_VIOLATION),
        (PRICE, BTC + 1, RejectReason.QUANTITY_STEP_VIOLATION),
        (-PRICE, BTC, RejectReason.PRICE_INVALID),
        (PRICE, -BTC, RejectReason.QUANTITY_INVALID),
        (60_000 * USDT, BTC, RejectReason.PRICE_OUT_OF_BAND),
    ]
    for price, quantity, reason in cases:
        result = driver.apply(
            AmendOrder(account_id="alice", order_id=order_id, price=price, quantity=quantity)
        )
        assert result.outcome.reason is reason


def test_amend_zero_keeps_the_current_price_or_quantity(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.BUY, 2 * BTC, PRICE)
    kept_price = driver.apply(
        AmendOrder(account_id="alice", order_id=order_id, price=0, quantity=BTC)
    )
    assert kept_price.outcome.accepted
    assert kept_price.outcome.priority_kept  # same price, smaller: in place
    order = driver.engine.order(order_id)
    assert order is not None
    assert (order.price, order.quantity) == (PRICE, BTC)
    kept_quantity = driver.apply(
        AmendOrder(account_id="alice", order_id=order_id, price=PRICE - TICK, quantity=0)
    )
    assert kept_quantity.outcome.accepted
    assert not kept_quantity.outcome.priority_kept
    order = driver.engine.order(order_id)
    assert order is not None
    assert (order.price, order.quantity) == (PRICE - TICK, BTC)


def test_amend_by_other_account_or_unknown(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    result = driver.apply(
        AmendOrder(account_id="bob", order_id=order_id, price=PRICE, quantity=LOT)
    )
    assert result.outcome.reason is RejectReason.ORDER_NOT_FOUND
    result = driver.apply(
        AmendOrder(account_id="alice", client_order_id="x", price=PRICE, quantity=LOT)
    )
    assert result.outcome.reason is RejectReason.ORDER_NOT_FOUND


def test_amend_in_cancel_only_and_halted(driver: EngineDriver) -> None:
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    amend = AmendOrder(account_id="alice", order_id=order_id, price=PRICE, quantity=LOT)
    driver.apply(SetMarketMode(symbol="BTC-USDT", mode=MarketMode.CANCEL_ONLY))
    assert driver.apply(amend).outcome.reason is RejectReason.MARKET_CANCEL_ONLY
    driver.apply(SetMarketMode(symbol="BTC-USDT", mode=MarketMode.HALTED))
    assert driver.apply(amend).outcome.reason is RejectReason.MARKET_HALTED
    driver.apply(SetMarketMode(symbol="BTC-USDT", mode=MarketMode.NORMAL))
    assert driver.apply(amend).outcome.accepted


def test_amend_self_trade_cancels_the_amended_order(driver: EngineDriver) -> None:
    rest(driver, "alice", Side.SELL, BTC, PRICE + TICK)
    order_id = rest(driver, "alice", Side.BUY, BTC, PRICE)
    result = driver.apply(
        AmendOrder(account_id="alice", order_id=order_id, price=PRICE + TICK, quantity=BTC)
    )
    (cancelled,) = events_of(result, OrderCancelled)
    assert (cancelled.order_id, cancelled.reason) == (order_id, CancelReason.SELF_TRADE_PREVENTION)
    assert driver.engine.order(order_id) is None
    driver.engine.check_invariants()


def test_amend_by_client_order_id(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.BUY, BTC, PRICE, client_order_id="a"))
    result = driver.apply(
        AmendOrder(account_id="alice", client_order_id="a", price=PRICE - TICK, quantity=BTC)
    )
    assert result.outcome.accepted
    cancel = driver.apply(CancelOrder(account_id="alice", client_order_id="a"))
    assert cancel.outcome.status is OrderStatus.CANCELLED
