"""The candle and ticker rules of streaming/aggregation/market.py, case by case."""

from __future__ import annotations

import pytest

from streaming.aggregation import (
    MINUTE_NS,
    WINDOW_MINUTES,
    MarketAggregator,
    MemoryState,
    MemoryStates,
    PartitionAggregator,
    Trade,
    change_bps,
)

SYMBOL = "BTC-USDT"
T0 = 1_800_000_000 * 1_000_000_000 // MINUTE_NS * MINUTE_NS  # a minute boundary


def trade(seq: int, price: int, *, at_ns: int, quantity: int = 10, symbol: str = SYMBOL) -> Trade:
    return Trade(
        symbol=symbol,
        seq=seq,
        trade_id=f"t{seq}",
        price=price,
        quantity=quantity,
        quote_quantity=price * quantity,
        taker_side=1,
        executed_at_ns=at_ns,
    )


@pytest.fixture
def market() -> MarketAggregator:
    return MarketAggregator(SYMBOL, MemoryState())


def test_trades_of_one_minute_build_one_open_candle(market: MarketAggregator) -> None:
    market.apply(trade(1, 100, at_ns=T0 + 1))
    market.apply(trade(3, 120, at_ns=T0 + 2))
    updates = market.apply(trade(5, 90, at_ns=T0 + MINUTE_NS - 1))
    (candle,) = updates.candles
    assert (candle.open, candle.high, candle.low, candle.close) == (100, 120, 90, 90)
    assert (candle.volume, candle.quote_volume, candle.trade_count) == (30, 3100, 3)
    assert (candle.first_trade_seq, candle.last_trade_seq) == (1, 5)
    assert (candle.open_time_ns, candle.close_time_ns) == (T0, T0 + MINUTE_NS)
    assert not candle.final


def test_a_later_minute_finalizes_the_open_candle_and_opens_the_next(
    market: MarketAggregator,
) -> None:
    market.apply(trade(1, 100, at_ns=T0))
    updates = market.apply(trade(2, 110, at_ns=T0 + MINUTE_NS))  # exactly on the boundary
    final, current = updates.candles
    assert final.final
    assert final.open_time_ns == T0
    assert final.close == 100
    assert not current.final
    assert current.open_time_ns == T0 + MINUTE_NS
    assert current.version > final.version


def test_empty_minutes_make_no_candle(market: MarketAggregator) -> None:
    market.apply(trade(1, 100, at_ns=T0))
    final, current = market.apply(trade(2, 110, at_ns=T0 + 5 * MINUTE_NS)).candles
    assert final.open_time_ns == T0
    assert current.open_time_ns == T0 + 5 * MINUTE_NS


def test_duplicates_are_dropped_in_the_open_and_in_final_candles(
    market: MarketAggregator,
) -> None:
    first = trade(1, 100, at_ns=T0)
    market.apply(first)
    assert market.apply(first).dropped  # open candle: its seq is marked
    market.apply(trade(2, 110, at_ns=T0 + MINUTE_NS))  # finalizes the first candle
    assert market.apply(first).dropped  # final candle: at or below the floor
    ticker = market.apply(trade(3, 120, at_ns=T0 + MINUTE_NS)).ticker
    assert ticker is not None
    assert ticker.trade_count == 3


def test_a_late_trade_updates_the_open_candle_by_seq_not_by_arrival(
    market: MarketAggregator,
) -> None:
    market.apply(trade(10, 100, at_ns=T0 + MINUTE_NS))  # opens minute 1 (floor 0)
    market.apply(trade(14, 104, at_ns=T0 + MINUTE_NS + 5))
    updates = market.apply(trade(12, 90, at_ns=T0 + MINUTE_NS + 9))  # late, unseen
    (candle,) = updates.candles
    assert (candle.open, candle.close, candle.low) == (100, 104, 90)
    assert (candle.first_trade_seq, candle.last_trade_seq, candle.trade_count) == (10, 14, 3)
    earlier = market.apply(trade(8, 80, at_ns=T0 + MINUTE_NS + 1))  # lower than every seq
    (candle,) = earlier.candles
    assert (candle.open, candle.first_trade_seq) == (80, 8)
    assert market.apply(trade(12, 90, at_ns=T0 + MINUTE_NS + 9)).dropped


def test_a_late_trade_for_a_final_candle_is_dropped(market: MarketAggregator) -> None:
    market.apply(trade(10, 100, at_ns=T0))
    market.apply(trade(20, 110, at_ns=T0 + MINUTE_NS))  # minute 0 final, floor 10
    assert market.apply(trade(5, 50, at_ns=T0)).dropped


def test_a_higher_seq_with_an_earlier_timestamp_counts_in_the_open_candle(
    market: MarketAggregator,
) -> None:
    market.apply(trade(1, 100, at_ns=T0 + 3 * MINUTE_NS))
    (candle,) = market.apply(trade(2, 95, at_ns=T0)).candles  # the clock stepped back
    assert candle.open_time_ns == T0 + 3 * MINUTE_NS
    assert (candle.close, candle.trade_count) == (95, 2)


def test_after_a_watermark_final_a_step_back_trade_opens_the_next_minute(
    market: MarketAggregator,
) -> None:
    market.apply(trade(1, 100, at_ns=T0))
    (final,) = market.advance_watermark(T0 + MINUTE_NS).candles
    assert final.final
    assert final.last_trade_seq == 1
    (candle,) = market.apply(trade(2, 90, at_ns=T0 + 7)).candles
    assert candle.open_time_ns == T0 + MINUTE_NS


def test_the_watermark_finalizes_only_a_candle_it_passed(market: MarketAggregator) -> None:
    market.apply(trade(1, 100, at_ns=T0))
    assert market.advance_watermark(T0 + MINUTE_NS - 1).candles == ()
    (final,) = market.advance_watermark(T0 + MINUTE_NS).candles
    assert final.final
    assert market.advance_watermark(T0 + 10 * MINUTE_NS).candles == ()  # nothing open


def test_the_partition_watermark_finalizes_an_idle_market() -> None:
    states = MemoryStates()
    partition = PartitionAggregator(
        market_state=states.market, partition_state=states.partition, lateness_ns=0
    )
    partition.apply(trade(1, 100, at_ns=T0, symbol="ETH-USDT"))
    updates = partition.apply(trade(1, 200, at_ns=T0 + MINUTE_NS, symbol=SYMBOL))
    assert len(updates) == 2
    (eth_final,) = updates[1].candles
    assert eth_final.symbol == "ETH-USDT"
    assert eth_final.final
    again = partition.apply(trade(2, 200, at_ns=T0 + MINUTE_NS + 1, symbol=SYMBOL))
    assert len(again) == 1  # finalized once


def test_lateness_holds_the_watermark_back() -> None:
    states = MemoryStates()
    partition = PartitionAggregator(
        market_state=states.market, partition_state=states.partition, lateness_ns=MINUTE_NS
    )
    partition.apply(trade(1, 100, at_ns=T0, symbol="ETH-USDT"))
    assert len(partition.apply(trade(1, 200, at_ns=T0 + MINUTE_NS, symbol=SYMBOL))) == 1
    assert len(partition.apply(trade(2, 200, at_ns=T0 + 2 * MINUTE_NS, symbol=SYMBOL))) == 2


def test_ticker_over_the_window(market: MarketAggregator) -> None:
    market.apply(trade(1, 100, at_ns=T0, quantity=1))
    market.apply(trade(2, 150, at_ns=T0 + MINUTE_NS, quantity=2))
    ticker = market.apply(trade(3, 90, at_ns=T0 + 2 * MINUTE_NS, quantity=3)).ticker
    assert ticker is not None
    assert (ticker.open, ticker.high, ticker.low, ticker.last) == (100, 150, 90, 90)
    assert (ticker.volume, ticker.quote_volume, ticker.trade_count) == (6, 670, 3)
    assert (ticker.change, ticker.change_bps, ticker.last_trade_seq) == (-10, -1000, 3)
    assert ticker.window_end_ns == T0 + 3 * MINUTE_NS
    assert ticker.window_end_ns - ticker.window_start_ns == WINDOW_MINUTES * MINUTE_NS


def test_ticker_rolls_off_minutes_older_than_24h(market: MarketAggregator) -> None:
    market.apply(trade(1, 500, at_ns=T0, quantity=1))  # the high, rolls off first
    market.apply(trade(2, 100, at_ns=T0 + MINUTE_NS, quantity=2))
    day_later = T0 + WINDOW_MINUTES * MINUTE_NS  # minute 0 leaves, minute 1 stays
    ticker = market.apply(trade(3, 120, at_ns=day_later, quantity=4)).ticker
    assert ticker is not None
    assert (ticker.open, ticker.high, ticker.low, ticker.last) == (100, 120, 100, 120)
    assert (ticker.volume, ticker.trade_count, ticker.change_bps) == (6, 2, 2000)
    much_later = day_later + 2 * WINDOW_MINUTES * MINUTE_NS  # everything before rolls off
    ticker = market.apply(trade(4, 130, at_ns=much_later, quantity=8)).ticker
    assert ticker is not None
    assert (ticker.open, ticker.volume, ticker.trade_count, ticker.change) == (130, 8, 1, 0)


@pytest.mark.parametrize(
    ("open_price", "last_price", "expected"),
    [
        (100, 100, 0),
        (3, 4, 3333),
        (3, 2, -3333),
        (10_000, 10_001, 1),
        (10_000, 9_999, -1),
        (0, 5, 0),
    ],
)
def test_change_bps_rounds_toward_zero(open_price: int, last_price: int, expected: int) -> None:
    assert change_bps(open_price, last_price) == expected


def test_a_trade_of_another_market_is_a_bug(market: MarketAggregator) -> None:
    with pytest.raises(RuntimeError):
        market.apply(trade(1, 100, at_ns=T0, symbol="ETH-USDT"))
