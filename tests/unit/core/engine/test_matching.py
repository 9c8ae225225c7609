"""Price-time priority, time in force, post-only and market orders."""

from __future__ import annotations

from core.engine import (
    CancelReason,
    OrderStatus,
    RejectReason,
    Side,
    TimeInForce,
)
from core.engine.events import (
    FundsReleased,
    FundsReserved,
    OrderAccepted,
    OrderExpired,
    TradeExecuted,
)
from core.engine.testing import (
    BTC,
    USDT,
    EngineDriver,
    events_of,
    limit_order,
    market_order,
)

PRICE = 50_000 * USDT
TICK = USDT // 100
LOT = BTC // 10_000


def fills(driver: EngineDriver, command: object) -> list[tuple[int, int, int]]:
    """(maker order id, price, quantity) of each trade the command makes."""
    result = driver.apply(command)  # type: ignore[arg-type]
    return [(t.maker_order_id, t.price, t.quantity) for t in events_of(result, TradeExecuted)]


def test_resting_order_events(driver: EngineDriver) -> None:
    result = driver.apply(limit_order("alice", Side.BUY, BTC, PRICE))
    accepted, reserved = result.events
    assert isinstance(accepted, OrderAccepted)
    assert isinstance(reserved, FundsReserved)
    assert reserved.amount == 50_100 * USDT
    assert reserved.order_id == accepted.order_id == result.outcome.order_id
    assert result.outcome.order_id == driver.engine_seq_last  # order id = engine_seq
    assert result.outcome.status is OrderStatus.NEW
    depth = driver.engine.book_depth("BTC-USDT")
    assert depth is not None
    assert [(level.price, level.quantity, level.order_count) for level in depth.bids] == [
        (PRICE, BTC, 1)
    ]


def test_best_price_first(driver: EngineDriver) -> None:
    low = driver.apply(limit_order("alice", Side.SELL, BTC, PRICE + 2 * TICK)).outcome.order_id
    best = driver.apply(limit_order("alice", Side.SELL, BTC, PRICE + TICK)).outcome.order_id
    high = driver.apply(limit_order("alice", Side.SELL, BTC, PRICE + 3 * TICK)).outcome.order_id
    got = fills(driver, limit_order("bob", Side.BUY, 3 * BTC, PRICE + 3 * TICK))
    assert got == [
        (best, PRICE + TICK, BTC),
        (low, PRICE + 2 * TICK, BTC),
        (high, PRICE + 3 * TICK, BTC),
    ]


def test_fifo_within_a_level(driver: EngineDriver) -> None:
    first = driver.apply(limit_order("alice", Side.BUY, BTC, PRICE)).outcome.order_id
    second = driver.apply(limit_order("carol", Side.BUY, BTC, PRICE)).outcome.order_id
    third = driver.apply(limit_order("alice", Side.BUY, BTC, PRICE)).outcome.order_id
    got = fills(driver, limit_order("bob", Side.SELL, BTC + BTC // 2, PRICE))
    assert got == [(first, PRICE, BTC), (second, PRICE, BTC // 2)]
    got = fills(driver, limit_order("bob", Side.SELL, 2 * BTC, PRICE))
    assert got == [(second, PRICE, BTC // 2), (third, PRICE, BTC)]


def test_trade_at_maker_price_and_taker_rests_remainder(driver: EngineDriver) -> None:
    maker = driver.apply(limit_order("alice", Side.SELL, BTC, PRICE)).outcome.order_id
    result = driver.apply(limit_order("bob", Side.BUY, 3 * BTC, PRICE + 100 * TICK))
    (trade,) = events_of(result, TradeExecuted)
    assert (trade.maker_order_id, trade.price, trade.quantity) == (maker, PRICE, BTC)
    assert trade.taker_side is Side.BUY
    assert (trade.maker_quantity_remaining, trade.taker_quantity_remaining) == (0, 2 * BTC)
    assert trade.quote_amount == 50_000 * USDT
    assert result.outcome.status is OrderStatus.PARTIALLY_FILLED
    assert result.outcome.filled_quantity == BTC
    (open_order,) = driver.engine.open_orders("bob")
    assert (open_order.price, open_order.quantity_remaining) == (PRICE + 100 * TICK, 2 * BTC)
    assert driver.engine.order(maker) is None
    assert driver.engine.closed_order_status("alice", maker) is OrderStatus.FILLED
    assert driver.engine.market("BTC-USDT").reference_price == PRICE  # type: ignore[union-attr]
    driver.engine.check_invariants()


def test_trade_ids_are_a_counter(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE + TICK))
    result = driver.apply(limit_order("bob", Side.BUY, 2 * BTC, PRICE + TICK))
    assert [t.trade_id for t in events_of(result, TradeExecuted)] == [1, 2]
    result = driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    result = driver.apply(limit_order("bob", Side.BUY, BTC, PRICE))
    assert [t.trade_id for t in events_of(result, TradeExecuted)] == [3]


def test_non_crossing_orders_rest(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE + TICK))
    result = driver.apply(limit_order("bob", Side.BUY, BTC, PRICE))
    assert events_of(result, TradeExecuted) == []
    depth = driver.engine.book_depth("BTC-USDT")
    assert depth is not None
    assert (depth.bids[0].price, depth.asks[0].price) == (PRICE, PRICE + TICK)


def test_ioc_fills_what_it_can_and_expires(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    result = driver.apply(
        limit_order("bob", Side.BUY, 2 * BTC, PRICE, time_in_force=TimeInForce.IOC)
    )
    assert len(events_of(result, TradeExecuted)) == 1
    (expired,) = events_of(result, OrderExpired)
    assert (expired.reason, expired.quantity_expired) == (CancelReason.IMMEDIATE_OR_CANCEL, BTC)
    assert result.outcome.status is OrderStatus.EXPIRED
    assert driver.engine.open_orders("bob") == []
    assert driver.engine.balance("bob", "USDT").held == 0
    driver.engine.check_invariants()


def test_ioc_that_fills_completely(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    result = driver.apply(limit_order("bob", Side.BUY, BTC, PRICE, time_in_force=TimeInForce.IOC))
    assert result.outcome.status is OrderStatus.FILLED
    assert events_of(result, OrderExpired) == []


def test_fok_unfillable_changes_nothing(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE + 2 * TICK))
    hash_before_balances = driver.engine.all_balances()
    depth_before = driver.engine.book_depth("BTC-USDT")
    result = driver.apply(
        limit_order("bob", Side.BUY, 2 * BTC, PRICE + TICK, time_in_force=TimeInForce.FOK)
    )
    assert result.outcome.reason is RejectReason.FOK_UNFILLABLE
    assert events_of(result, TradeExecuted) == []
    assert driver.engine.all_balances() == hash_before_balances
    after = driver.engine.book_depth("BTC-USDT")
    assert after is not None
    assert depth_before is not None
    assert (after.bids, after.asks) == (depth_before.bids, depth_before.asks)


def test_fok_fillable_fills_completely(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    driver.apply(limit_order("carol", Side.SELL, BTC, PRICE + TICK))
    result = driver.apply(
        limit_order("bob", Side.BUY, 2 * BTC, PRICE + TICK, time_in_force=TimeInForce.FOK)
    )
    assert result.outcome.status is OrderStatus.FILLED
    assert sum(t.quantity for t in events_of(result, TradeExecuted)) == 2 * BTC


def test_post_only_that_would_take_is_rejected(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    result = driver.apply(limit_order("bob", Side.BUY, BTC, PRICE, post_only=True))
    assert result.outcome.reason is RejectReason.POST_ONLY_WOULD_TAKE
    assert driver.engine.open_orders("bob") == []


def test_post_only_that_rests(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    result = driver.apply(limit_order("bob", Side.BUY, BTC, PRICE - TICK, post_only=True))
    assert result.outcome.status is OrderStatus.NEW


def test_market_buy_by_quantity_reserves_exact_cost(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE + 100 * TICK))
    result = driver.apply(market_order("bob", Side.BUY, quantity=2 * BTC))
    (reserved,) = events_of(result, FundsReserved)
    cost = 50_000 * USDT + 50_001 * USDT
    assert reserved.amount == cost + cost * 2_000 // 1_000_000
    assert events_of(result, FundsReleased) == []  # nothing left over
    assert result.outcome.status is OrderStatus.FILLED
    assert driver.engine.balance("bob", "USDT").held == 0
    driver.engine.check_invariants()


def test_market_buy_by_quantity_short_of_funds(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    driver.fund("dave", "USDT", 50_099 * USDT)
    result = driver.apply(market_order("dave", Side.BUY, quantity=BTC))
    assert result.outcome.reason is RejectReason.INSUFFICIENT_BALANCE
    driver.fund("dave", "USDT", USDT)
    assert driver.apply(market_order("dave", Side.BUY, quantity=BTC)).outcome.accepted


def test_market_order_remainder_when_book_runs_out(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.BUY, BTC, PRICE))
    result = driver.apply(market_order("bob", Side.SELL, quantity=3 * BTC))
    (expired,) = events_of(result, OrderExpired)
    assert (expired.reason, expired.quantity_expired) == (
        CancelReason.MARKET_ORDER_REMAINDER,
        2 * BTC,
    )
    assert result.outcome.filled_quantity == BTC
    assert driver.engine.balance("bob", "BTC").held == 0


def test_market_order_stops_at_the_band_edge(driver: EngineDriver) -> None:
    # reference 50,000; band 10%: asks above 55,000 are out of reach of a market buy
    driver.apply(limit_order("alice", Side.SELL, BTC, 55_000 * USDT))
    driver.apply(limit_order("alice", Side.SELL, BTC, 50_000 * USDT))
    driver.apply(limit_order("bob", Side.BUY, BTC, PRICE))  # trade at 50,000
    driver.apply(limit_order("alice", Side.SELL, BTC, 55_000 * USDT))  # in band of 50,000
    assert driver.engine.market("BTC-USDT").reference_price == PRICE  # type: ignore[union-attr]
    result = driver.apply(market_order("carol", Side.BUY, quantity=3 * BTC))
    assert [t.price for t in events_of(result, TradeExecuted)] == [55_000 * USDT] * 2
    (expired,) = result.events[-1:]
    assert isinstance(expired, OrderExpired)
    assert expired.reason is CancelReason.MARKET_ORDER_REMAINDER


def test_market_sell_band_edge(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.BUY, BTC, 45_000 * USDT))
    driver.apply(limit_order("alice", Side.BUY, BTC, 46_000 * USDT))
    # move the reference to 51,000: the band floor becomes 45,900
    driver.apply(limit_order("alice", Side.SELL, BTC, 51_000 * USDT))
    driver.apply(limit_order("bob", Side.BUY, BTC, 51_000 * USDT))
    result = driver.apply(market_order("carol", Side.SELL, quantity=2 * BTC))
    assert [t.price for t in events_of(result, TradeExecuted)] == [46_000 * USDT]
    (expired,) = events_of(result, OrderExpired)
    assert (expired.reason, expired.quantity_expired) == (CancelReason.PRICE_BAND, BTC)


def test_market_buy_whose_book_is_all_beyond_the_band(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, 55_000 * USDT))
    driver.apply(limit_order("alice", Side.BUY, BTC, 46_000 * USDT))
    driver.apply(limit_order("bob", Side.SELL, BTC, 46_000 * USDT))  # reference 46,000
    result = driver.apply(market_order("carol", Side.BUY, quantity=BTC))
    assert events_of(result, TradeExecuted) == []
    (expired,) = events_of(result, OrderExpired)
    assert expired.reason is CancelReason.PRICE_BAND
    assert events_of(result, FundsReserved) == []


def test_market_buy_by_budget(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    driver.apply(limit_order("alice", Side.SELL, BTC, 50_010 * USDT))
    budget = 75_000 * USDT
    result = driver.apply(market_order("bob", Side.BUY, quote_quantity=budget))
    (reserved,) = events_of(result, FundsReserved)
    assert reserved.amount == budget + budget * 2_000 // 1_000_000
    trades = events_of(result, TradeExecuted)
    assert [(t.price, t.quantity) for t in trades] == [(PRICE, BTC), (50_010 * USDT, 4_999 * LOT)]
    spent = sum(t.quote_amount + t.taker_fee for t in trades)
    assert spent <= reserved.amount
    assert all(t.taker_quantity_remaining == 0 for t in trades)
    assert budget - sum(t.quote_amount for t in trades) < notional_of_lot(50_010 * USDT)
    assert result.outcome.status is OrderStatus.FILLED
    (released,) = events_of(result, FundsReleased)
    assert released.amount == reserved.amount - spent
    assert driver.engine.balance("bob", "USDT").held == 0
    driver.engine.check_invariants()


def notional_of_lot(price: int) -> int:
    return price * LOT // BTC


def test_market_buy_budget_when_book_runs_out(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    result = driver.apply(market_order("bob", Side.BUY, quote_quantity=100_000 * USDT))
    (expired,) = events_of(result, OrderExpired)
    assert expired.reason is CancelReason.MARKET_ORDER_REMAINDER
    assert result.outcome.filled_quantity == BTC
    assert driver.engine.balance("bob", "USDT").held == 0


def test_market_buy_budget_too_small_for_one_lot(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    result = driver.apply(market_order("bob", Side.BUY, quote_quantity=4 * USDT))  # lot = 5
    assert events_of(result, TradeExecuted) == []
    assert result.outcome.status is OrderStatus.EXPIRED
    assert driver.engine.balance("bob", "USDT").held == 0


def test_reference_price_moves_the_band(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, 54_000 * USDT))
    driver.apply(limit_order("bob", Side.BUY, BTC, 54_000 * USDT))
    result = driver.apply(limit_order("bob", Side.BUY, BTC, 59_000 * USDT))
    assert result.outcome.accepted  # 54,000 * 1.1 = 59,400
    result = driver.apply(limit_order("bob", Side.BUY, BTC, 48_000 * USDT))
    assert result.outcome.reason is RejectReason.PRICE_OUT_OF_BAND  # floor 48,600
