"""Properties of the aggregation rules against a naive reference (Hypothesis).

Trades are generated minute by minute with increasing seqs (as the core publishes them);
the arrival order shuffles trades within their minute and inserts duplicates anywhere after
a trade's first arrival. Whatever the arrival order: the final candles, the open candle and
the last ticker equal the naive model's, and replaying the same arrivals gives the same
updates, byte for byte.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.aggregation import (
    MINUTE_NS,
    WINDOW_MINUTES,
    Candle,
    MemoryStates,
    PartitionAggregator,
    Ticker,
    Trade,
    Updates,
    WriteBackState,
    change_bps,
)

T0 = 1_800_000_000 * 1_000_000_000 // MINUTE_NS * MINUTE_NS
SYMBOLS = ("BTC-USDT", "ETH-USDT")


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[Trade], list[Trade]]:
    """(trades in seq order, the arrival order with shuffles and duplicates)."""
    trades: list[Trade] = []
    blocks: list[list[Trade]] = []
    minute = 0
    seqs = dict.fromkeys(SYMBOLS, 0)
    for _ in range(draw(st.integers(1, 12))):
        minute += draw(st.sampled_from([1, 1, 2, 5, WINDOW_MINUTES - 1, WINDOW_MINUTES + 3]))
        times = sorted(draw(st.lists(st.integers(0, MINUTE_NS - 1), min_size=1, max_size=4)))
        block = []
        for offset in times:  # seqs grow with time, as the core assigns them
            symbol = draw(st.sampled_from(SYMBOLS))
            # Sometimes a jump over a 4032-seq block of seen marks (market.SEEN_BLOCK_SEQS).
            seqs[symbol] += draw(st.sampled_from([1, 1, 2, 3, 4_031, 4_033]))
            price = draw(st.integers(1, 1_000))
            quantity = draw(st.integers(1, 100))
            block.append(
                Trade(
                    symbol=symbol,
                    seq=seqs[symbol],
                    trade_id=f"{symbol}:{seqs[symbol]}",
                    price=price,
                    quantity=quantity,
                    quote_quantity=price * quantity,
                    taker_side=1,
                    executed_at_ns=T0 + minute * MINUTE_NS + offset,
                )
            )
        trades.extend(block)
        shuffled = draw(st.permutations(block))
        seen: list[Trade] = []
        for item in shuffled:
            seen.append(item)
            if draw(st.booleans()) and draw(st.booleans()):
                shuffled_duplicate = draw(st.sampled_from([*seen, *trades]))
                seen.append(shuffled_duplicate)
        blocks.append(seen)
    return trades, [item for block in blocks for item in block]


def run(order: list[Trade]) -> list[Updates]:
    states = MemoryStates()
    # Lateness of a minute: a shuffled block never arrives after the watermark passed it.
    partition = PartitionAggregator(
        market_state=states.market, partition_state=states.partition, lateness_ns=MINUTE_NS
    )
    return [update for trade in order for update in partition.apply(trade)]


def naive_candles(trades: list[Trade], symbol: str) -> list[tuple[int, ...]]:
    by_minute: dict[int, list[Trade]] = defaultdict(list)
    for trade in trades:
        if trade.symbol == symbol:
            by_minute[trade.executed_at_ns // MINUTE_NS].append(trade)
    candles: list[tuple[int, ...]] = []
    for minute in sorted(by_minute):
        group = sorted(by_minute[minute], key=lambda t: t.seq)
        candles.append(
            (
                minute * MINUTE_NS,
                group[0].price,
                max(t.price for t in group),
                min(t.price for t in group),
                group[-1].price,
                sum(t.quantity for t in group),
                sum(t.quote_quantity for t in group),
                len(group),
                group[0].seq,
                group[-1].seq,
            )
        )
    return candles


def candle_tuple(candle: Candle) -> tuple[int, ...]:
    return (
        candle.open_time_ns,
        candle.open,
        candle.high,
        candle.low,
        candle.close,
        candle.volume,
        candle.quote_volume,
        candle.trade_count,
        candle.first_trade_seq,
        candle.last_trade_seq,
    )


def naive_ticker(trades: list[Trade], symbol: str) -> tuple[int, ...]:
    mine = [t for t in trades if t.symbol == symbol]
    newest_minute = max(t.executed_at_ns // MINUTE_NS for t in mine)
    window = sorted(
        (t for t in mine if t.executed_at_ns // MINUTE_NS > newest_minute - WINDOW_MINUTES),
        key=lambda t: t.seq,
    )
    open_price, last = window[0].price, window[-1].price
    return (
        open_price,
        max(t.price for t in window),
        min(t.price for t in window),
        last,
        sum(t.quantity for t in window),
        sum(t.quote_quantity for t in window),
        change_bps(open_price, last),
        len(window),
        (newest_minute + 1) * MINUTE_NS,
        mine[-1].seq,
    )


def ticker_tuple(ticker: Ticker) -> tuple[int, ...]:
    return (
        ticker.open,
        ticker.high,
        ticker.low,
        ticker.last,
        ticker.volume,
        ticker.quote_volume,
        ticker.change_bps,
        ticker.trade_count,
        ticker.window_end_ns,
        ticker.last_trade_seq,
    )


def latest_candles(updates: list[Updates], symbol: str) -> list[tuple[int, ...]]:
    """The newest version of each candle of `symbol`, oldest first."""
    newest: dict[int, Candle] = {}
    for update in updates:
        for candle in update.candles:
            if candle.symbol == symbol:
                current = newest.get(candle.open_time_ns)
                if current is None or candle.version > current.version:
                    newest[candle.open_time_ns] = candle
    return [candle_tuple(newest[key]) for key in sorted(newest)]


@settings(max_examples=200, deadline=None)
@given(arrivals())
def test_candles_and_ticker_equal_the_naive_model_whatever_the_arrival_order(
    generated: tuple[list[Trade], list[Trade]],
) -> None:
    trades, order = generated
    updates = run(order)
    assert sum(1 for u in updates if u.trade is not None) == len(trades)  # each applied once
    for symbol in SYMBOLS:
        if not any(t.symbol == symbol for t in trades):
            continue
        assert latest_candles(updates, symbol) == naive_candles(trades, symbol)
        tickers = [u.ticker for u in updates if u.ticker is not None and u.ticker.symbol == symbol]
        assert ticker_tuple(max(tickers, key=lambda t: t.version)) == naive_ticker(trades, symbol)


@settings(max_examples=100, deadline=None)
@given(arrivals())
def test_a_replay_gives_the_same_updates(generated: tuple[list[Trade], list[Trade]]) -> None:
    _trades, order = generated
    assert run(order) == run(list(order))


@settings(max_examples=100, deadline=None)
@given(arrivals())
def test_final_candles_never_change_and_versions_only_grow(
    generated: tuple[list[Trade], list[Trade]],
) -> None:
    _trades, order = generated
    finals: dict[tuple[str, int], Candle] = {}
    versions: dict[str, int] = {}
    for update in run(order):
        for candle in update.candles:
            key = (candle.symbol, candle.open_time_ns)
            assert key not in finals, "a final candle changed"
            if candle.final:
                finals[key] = replace(candle)
            assert candle.version > versions.get(f"c:{candle.symbol}", -1) or candle.final
            versions[f"c:{candle.symbol}"] = max(
                versions.get(f"c:{candle.symbol}", -1), candle.version
            )


@settings(max_examples=100, deadline=None)
@given(arrivals(), st.lists(st.integers(1, 6), min_size=1, max_size=40))
def test_a_write_back_cache_per_checkpoint_gives_the_same_updates_and_state(
    generated: tuple[list[Trade], list[Trade]], checkpoint_sizes: list[int]
) -> None:
    """The app's layout: one WriteBackState per market per checkpoint over the stored
    state, written back at the checkpoint. Same updates as the direct store, and the store
    ends with the same keys and values."""
    _trades, order = generated
    direct = run(order)
    stored = MemoryStates()
    updates: list[Updates] = []
    position = 0
    sizes = iter(checkpoint_sizes * (len(order) // len(checkpoint_sizes) + 1))
    while position < len(order):
        chunk = order[position : position + next(sizes)]
        position += len(chunk)
        caches: dict[str, WriteBackState] = {}

        def cached(symbol: str, caches: dict[str, WriteBackState] = caches) -> WriteBackState:
            if symbol not in caches:
                caches[symbol] = WriteBackState(stored.market(symbol))
            return caches[symbol]

        partition_cache = WriteBackState(stored.partition)
        partition = PartitionAggregator(
            market_state=cached, partition_state=partition_cache, lateness_ns=MINUTE_NS
        )
        updates += [update for trade in chunk for update in partition.apply(trade)]
        for symbol, cache in caches.items():
            cache.write_to(stored.market(symbol))
        partition_cache.write_to(stored.partition)
    assert updates == direct
    reference = MemoryStates()
    replay = PartitionAggregator(
        market_state=reference.market, partition_state=reference.partition, lateness_ns=MINUTE_NS
    )
    for trade in order:
        replay.apply(trade)
    assert {s: m.values for s, m in stored.markets.items()} == {
        s: m.values for s, m in reference.markets.items()
    }
    assert stored.partition.values == reference.partition.values
    # Quix serializes state values as JSON: only 64-bit integers go through it.
    for states in (*stored.markets.values(), stored.partition):
        assert all(fits_json(value) for value in states.values.values())


def fits_json(value: object) -> bool:
    if isinstance(value, bool | str) or value is None:
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, list):
        return all(fits_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and fits_json(item) for key, item in value.items())
    return False
