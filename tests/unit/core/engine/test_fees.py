"""Fees: quote asset, integer ceiling, cumulative per order, paid to the fee account."""

from __future__ import annotations

from core.engine import FEE_ACCOUNT_ID, CancelOrder, Side
from core.engine.events import FundsReleased, TradeExecuted
from core.engine.testing import BTC, USDT, EngineDriver, btc_usdt_spec, events_of, limit_order

PRICE = 50_000 * USDT
LOT = BTC // 10_000


def test_fees_of_one_fill(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    result = driver.apply(limit_order("bob", Side.BUY, BTC, PRICE))
    (trade,) = events_of(result, TradeExecuted)
    assert trade.maker_fee == 50 * USDT  # 0.1%
    assert trade.taker_fee == 100 * USDT  # 0.2%
    assert driver.engine.balance(FEE_ACCOUNT_ID, "USDT").available == 150 * USDT
    # buyer paid notional + fee, seller received notional - fee
    assert driver.engine.balance("bob", "USDT").available == 1_000_000 * USDT - 50_100 * USDT
    assert driver.engine.balance("alice", "USDT").available == 1_000_000 * USDT + 49_950 * USDT
    assert driver.engine.balance("bob", "BTC").available == 101 * BTC


def test_fee_rounds_up_in_favour_of_the_exchange() -> None:
    driver = EngineDriver()
    # price 1.00 USDT per BTC, one lot (0.0001 BTC) costs 100 minor units of USDT
    driver.bootstrap_btc_usdt(
        btc_usdt_spec(
            price_tick=10_000,
            reference_price=1_000_000,
            min_notional=0,
            maker_fee_ppm=1_000,
            taker_fee_ppm=2_000,
        )
    )
    driver.fund("alice", "BTC", BTC)
    driver.fund("bob", "USDT", 10 * USDT)
    driver.apply(limit_order("alice", Side.SELL, LOT, 1_000_000))
    result = driver.apply(limit_order("bob", Side.BUY, LOT, 1_000_000))
    (trade,) = events_of(result, TradeExecuted)
    assert trade.quote_amount == 100
    assert (trade.maker_fee, trade.taker_fee) == (1, 1)  # ceil(0.1), ceil(0.2)


def test_cumulative_fee_is_never_more_than_one_fill_would_pay() -> None:
    driver = EngineDriver()
    driver.bootstrap_btc_usdt(
        btc_usdt_spec(price_tick=10_000, reference_price=1_000_000, min_notional=0)
    )
    driver.fund("alice", "BTC", BTC)
    driver.fund("bob", "USDT", 10 * USDT)
    for _ in range(10):
        driver.apply(limit_order("alice", Side.SELL, LOT, 1_000_000))
    result = driver.apply(limit_order("bob", Side.BUY, 10 * LOT, 1_000_000))
    trades = events_of(result, TradeExecuted)
    assert len(trades) == 10
    # taker: 10 fills of 100 units at 0.2% = 2 units in total, as one fill of 1,000 would pay
    assert sum(trade.taker_fee for trade in trades) == 2
    # each maker order is its own order: each pays ceil(0.1) = 1
    assert [trade.maker_fee for trade in trades] == [1] * 10
    assert driver.engine.balance("bob", "USDT").held == 0
    driver.engine.check_invariants()


def test_maker_buy_releases_the_unused_taker_fee_reservation(driver: EngineDriver) -> None:
    driver.apply(limit_order("alice", Side.BUY, BTC, PRICE))  # reserves 50,100
    result = driver.apply(limit_order("bob", Side.SELL, BTC, PRICE))
    (trade,) = events_of(result, TradeExecuted)
    assert trade.maker_fee == 50 * USDT
    (released,) = events_of(result, FundsReleased)
    assert (released.account_id, released.amount) == ("alice", 50 * USDT)
    assert driver.engine.balance("alice", "USDT").held == 0


def test_cancel_releases_rest_of_reservation_after_partial_fill(driver: EngineDriver) -> None:
    order_id = driver.apply(limit_order("alice", Side.BUY, BTC, PRICE)).outcome.order_id
    driver.apply(limit_order("bob", Side.SELL, BTC // 2, PRICE))
    result = driver.apply(CancelOrder(account_id="alice", order_id=order_id))
    (released,) = events_of(result, FundsReleased)
    assert released.amount == 50_100 * USDT - 25_000 * USDT - 25 * USDT
    assert driver.engine.balance("alice", "USDT").held == 0


def test_zero_fee_market() -> None:
    driver = EngineDriver()
    driver.bootstrap_btc_usdt(btc_usdt_spec(maker_fee_ppm=0, taker_fee_ppm=0))
    driver.fund("alice", "BTC", BTC)
    driver.fund("bob", "USDT", PRICE)
    driver.apply(limit_order("alice", Side.SELL, BTC, PRICE))
    result = driver.apply(limit_order("bob", Side.BUY, BTC, PRICE))
    (trade,) = events_of(result, TradeExecuted)
    assert (trade.maker_fee, trade.taker_fee) == (0, 0)
    assert driver.engine.balance("bob", "USDT").available == 0
