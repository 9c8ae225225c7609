"""One case per rejection reason of PlaceOrder. A rejection changes no balance or book."""

from __future__ import annotations

import pytest

from core.engine import (
    Engine,
    EngineConfig,
    MarketMode,
    OrderStatus,
    OrderType,
    PlaceOrder,
    RejectReason,
    SetMarketMode,
    Side,
    TimeInForce,
)
from core.engine.events import OrderRejected
from core.engine.money import INT64_MAX
from core.engine.testing import (
    BTC,
    USDT,
    EngineDriver,
    btc_usdt_spec,
    events_of,
    limit_order,
    market_order,
)

PRICE = 50_000 * USDT
LOT = BTC // 10_000

STATIC_CASES: list[tuple[str, PlaceOrder, RejectReason]] = [
    (
        "unknown symbol",
        limit_order("alice", Side.BUY, BTC, PRICE, symbol="ETH-USDT"),
        RejectReason.SYMBOL_UNKNOWN,
    ),
    ("zero quantity", limit_order("alice", Side.BUY, 0, PRICE), RejectReason.QUANTITY_INVALID),
    (
        "negative quantity",
        limit_order("alice", Side.BUY, -LOT, PRICE),
        RejectReason.QUANTITY_INVALID,
    ),
    ("zero price", limit_order("alice", Side.BUY, BTC, 0), RejectReason.PRICE_INVALID),
    ("negative price", limit_order("alice", Side.BUY, BTC, -PRICE), RejectReason.PRICE_INVALID),
    (
        "price beyond int64",
        limit_order("alice", Side.BUY, BTC, INT64_MAX + 1),
        RejectReason.AMOUNT_OUT_OF_RANGE,
    ),
    (
        "quantity beyond int64",
        limit_order("alice", Side.BUY, INT64_MAX + 1, PRICE),
        RejectReason.AMOUNT_OUT_OF_RANGE,
    ),
    (
        "price off tick",
        limit_order("alice", Side.BUY, BTC, PRICE + 1),
        RejectReason.PRICE_TICK_VIOLATION,
    ),
    (
        "quantity off lot",
        limit_order("alice", Side.BUY, BTC + 1, PRICE),
        RejectReason.QUANTITY_STEP_VIOLATION,
    ),
    (
        "quantity above max",
        limit_order("alice", Side.SELL, 100 * BTC + LOT, PRICE),
        RejectReason.QUANTITY_ABOVE_MAX,
    ),
    (
        "price above band",
        limit_order("alice", Side.BUY, BTC, 55_000 * USDT + USDT // 100),
        RejectReason.PRICE_OUT_OF_BAND,
    ),
    (
        "price below band",
        limit_order("alice", Side.SELL, BTC, 45_000 * USDT - USDT // 100),
        RejectReason.PRICE_OUT_OF_BAND,
    ),
    (
        "market with GTC",
        market_order("alice", Side.BUY, quantity=BTC, time_in_force=TimeInForce.GTC),
        RejectReason.TIME_IN_FORCE_INVALID,
    ),
    (
        "post-only IOC",
        limit_order("alice", Side.BUY, BTC, PRICE, time_in_force=TimeInForce.IOC, post_only=True),
        RejectReason.TIME_IN_FORCE_INVALID,
    ),
    (
        "post-only FOK",
        limit_order("alice", Side.BUY, BTC, PRICE, time_in_force=TimeInForce.FOK, post_only=True),
        RejectReason.TIME_IN_FORCE_INVALID,
    ),
    (
        "post-only market",
        PlaceOrder(
            account_id="alice",
            symbol="BTC-USDT",
            side=Side.BUY,
            order_type=OrderType.MARKET,
            quantity=BTC,
            time_in_force=TimeInForce.IOC,
            post_only=True,
        ),
        RejectReason.TIME_IN_FORCE_INVALID,
    ),
    (
        "market budget with FOK",
        market_order("alice", Side.BUY, quote_quantity=PRICE, time_in_force=TimeInForce.FOK),
        RejectReason.TIME_IN_FORCE_INVALID,
    ),
    (
        "market with a price",
        PlaceOrder(
            account_id="alice",
            symbol="BTC-USDT",
            side=Side.BUY,
            order_type=OrderType.MARKET,
            quantity=BTC,
            price=PRICE,
            time_in_force=TimeInForce.IOC,
        ),
        RejectReason.PRICE_INVALID,
    ),
    (
        "market with quantity and budget",
        market_order("alice", Side.BUY, quantity=BTC, quote_quantity=PRICE),
        RejectReason.QUANTITY_INVALID,
    ),
    ("market with neither", market_order("alice", Side.BUY), RejectReason.QUANTITY_INVALID),
    (
        "market sell by budget",
        market_order("alice", Side.SELL, quote_quantity=PRICE),
        RejectReason.QUANTITY_INVALID,
    ),
    (
        "market budget below min notional",
        market_order("alice", Side.BUY, quote_quantity=USDT - 1),
        RejectReason.NOTIONAL_BELOW_MIN,
    ),
    (
        "market budget beyond int64",
        market_order("alice", Side.BUY, quote_quantity=INT64_MAX),
        RejectReason.AMOUNT_OUT_OF_RANGE,
    ),
    (
        "limit with a quote quantity",
        PlaceOrder(
            account_id="alice",
            symbol="BTC-USDT",
            side=Side.BUY,
            quantity=BTC,
            price=PRICE,
            quote_quantity=PRICE,
        ),
        RejectReason.QUANTITY_INVALID,
    ),
]


@pytest.mark.parametrize(
    ("command", "reason"),
    [(command, reason) for _, command, reason in STATIC_CASES],
    ids=[name for name, _, _ in STATIC_CASES],
)
def test_place_rejection(driver: EngineDriver, command: PlaceOrder, reason: RejectReason) -> None:
    balances_before = driver.engine.all_balances()
    result = driver.apply(command)
    assert result.outcome.reason is reason
    assert result.outcome.status is OrderStatus.REJECTED
    assert not result.outcome.accepted
    (event,) = events_of(result, OrderRejected)
    assert event.reason is reason
    assert len(result.events) == 1
    assert driver.engine.all_balances() == balances_before
    assert driver.engine.open_orders("alice") == []


def small_lots_driver(**overrides: int | str) -> EngineDriver:
    small = EngineDriver()
    small.bootstrap_btc_usdt(btc_usdt_spec(**overrides))
    small.fund("alice", "USDT", 1_000_000 * USDT)
    return small


def test_quantity_below_min() -> None:
    small = small_lots_driver(min_quantity=10 * LOT)
    result = small.apply(limit_order("alice", Side.BUY, 9 * LOT, PRICE))
    assert result.outcome.reason is RejectReason.QUANTITY_BELOW_MIN


def test_notional_below_min() -> None:
    small = small_lots_driver(min_notional=10 * USDT)
    result = small.apply(limit_order("alice", Side.BUY, LOT, PRICE))  # 5 USDT
    assert result.outcome.reason is RejectReason.NOTIONAL_BELOW_MIN
    assert small.apply(limit_order("alice", Side.BUY, 2 * LOT, PRICE)).outcome.accepted


def test_rejection_of_unknown_symbol_goes_to_the_account_stream(driver: EngineDriver) -> None:
    seq_before = driver.engine.account_stream_seq()
    result = driver.apply(limit_order("alice", Side.BUY, BTC, PRICE, symbol="NOPE"))
    (event,) = result.events
    assert event.symbol == ""
    assert event.seq == seq_before + 1


def test_rejection_in_a_market_takes_the_next_market_seq(driver: EngineDriver) -> None:
    seq_before = driver.engine.market("BTC-USDT").seq  # type: ignore[union-attr]
    result = driver.apply(limit_order("alice", Side.BUY, 0, PRICE))
    (event,) = result.events
    assert (event.symbol, event.seq) == ("BTC-USDT", seq_before + 1)


def test_insufficient_quote_for_buy(driver: EngineDriver) -> None:
    driver.fund("dave", "USDT", 50_000 * USDT)  # the taker fee reservation is missing
    result = driver.apply(limit_order("dave", Side.BUY, BTC, PRICE))
    assert result.outcome.reason is RejectReason.INSUFFICIENT_BALANCE


def test_buy_with_exact_reservation_is_accepted(driver: EngineDriver) -> None:
    driver.fund("dave", "USDT", 50_100 * USDT)  # notional + 0.2% taker fee
    result = driver.apply(limit_order("dave", Side.BUY, BTC, PRICE))
    assert result.outcome.accepted
    balance = driver.engine.balance("dave", "USDT")
    assert (balance.available, balance.held) == (0, 50_100 * USDT)


def test_insufficient_base_for_sell(driver: EngineDriver) -> None:
    result = driver.apply(limit_order("alice", Side.SELL, 100 * BTC + LOT, PRICE))
    assert result.outcome.reason is RejectReason.QUANTITY_ABOVE_MAX
    driver.fund("dave", "BTC", BTC)
    result = driver.apply(limit_order("dave", Side.SELL, BTC + LOT, PRICE))
    assert result.outcome.reason is RejectReason.INSUFFICIENT_BALANCE


def test_market_order_against_empty_book(driver: EngineDriver) -> None:
    result = driver.apply(market_order("alice", Side.BUY, quantity=BTC))
    assert result.outcome.reason is RejectReason.NO_LIQUIDITY


def test_market_halted(driver: EngineDriver) -> None:
    driver.apply(SetMarketMode(symbol="BTC-USDT", mode=MarketMode.HALTED))
    result = driver.apply(limit_order("alice", Side.BUY, BTC, PRICE))
    assert result.outcome.reason is RejectReason.MARKET_HALTED


def test_market_cancel_only(driver: EngineDriver) -> None:
    driver.apply(SetMarketMode(symbol="BTC-USDT", mode=MarketMode.CANCEL_ONLY))
    result = driver.apply(limit_order("alice", Side.BUY, BTC, PRICE))
    assert result.outcome.reason is RejectReason.MARKET_CANCEL_ONLY


def test_open_order_limit() -> None:
    driver = EngineDriver(Engine(EngineConfig(open_orders_max_per_account=2)))
    driver.bootstrap_btc_usdt()
    driver.fund("alice", "USDT", 1_000_000 * USDT)
    assert driver.apply(limit_order("alice", Side.BUY, BTC, PRICE)).outcome.accepted
    assert driver.apply(limit_order("alice", Side.BUY, BTC, PRICE)).outcome.accepted
    result = driver.apply(limit_order("alice", Side.BUY, BTC, PRICE))
    assert result.outcome.reason is RejectReason.OPEN_ORDER_LIMIT_EXCEEDED
    # orders that cannot rest are not counted against the limit
    driver.fund("bob", "BTC", BTC)
    driver.apply(limit_order("bob", Side.SELL, BTC, PRICE + 10_000))
    ioc = limit_order("alice", Side.BUY, BTC, PRICE + 10_000, time_in_force=TimeInForce.IOC)
    assert driver.apply(ioc).outcome.status is OrderStatus.FILLED
