"""Helpers for the tests and the bench: trade events as the core publishes them, and the
results the rules give for them (the expected candles and tickers)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from exchange.events.v1 import core_events_pb2, envelope_pb2

from streaming.aggregation import (
    MINUTE_NS,
    Candle,
    MemoryStates,
    PartitionAggregator,
    Ticker,
    Trade,
)
from streaming.codec import timestamp

SHARD_ID: Final = "core-test"
T0_NS: Final = 1_800_000_000 * 1_000_000_000 // MINUTE_NS * MINUTE_NS  # a minute boundary


def make_trades(
    count: int, *, symbols: Sequence[str] = ("BTC-USDT", "ETH-USDT"), spacing_ns: int = 7 * 10**9
) -> list[Trade]:
    """`count` trades round-robin over `symbols`, `spacing_ns` apart, per-market seqs with
    gaps (other market events take seqs too), prices that move, exact notionals."""
    trades = []
    seqs = dict.fromkeys(symbols, 0)
    for index in range(count):
        symbol = symbols[index % len(symbols)]
        seqs[symbol] += 1 + index % 3
        price = 50_000 * 10**6 + (index * 7_919 % 2_000 - 1_000) * 10**6
        quantity = 10**5 * (1 + index % 5)
        trades.append(
            Trade(
                symbol=symbol,
                seq=seqs[symbol],
                trade_id=f"{symbol}-trade-{index + 1}",
                price=price,
                quantity=quantity,
                quote_quantity=price * quantity // 10**8,
                taker_side=1 + index % 2,
                executed_at_ns=T0_NS + index * spacing_ns,
                event_id=f"{SHARD_ID}:{index + 1}:0",
                engine_seq=index + 1,
                shard_id=SHARD_ID,
                correlation_id=f"order:test:{index + 1}",
            )
        )
    return trades


def trade_envelope(trade: Trade) -> bytes:
    """The TradeExecuted envelope the core would publish for `trade`."""
    base, quote = trade.symbol.split("-")
    return envelope_pb2.EventEnvelope(
        event_id=trade.event_id,
        event_version=1,
        symbol=trade.symbol,
        seq=trade.seq,
        occurred_at=timestamp(trade.executed_at_ns),
        correlation_id=trade.correlation_id,
        causation_id=f"{trade.shard_id}:{trade.engine_seq}",
        epoch=1,
        engine_seq=trade.engine_seq,
        shard_id=trade.shard_id,
        producer=envelope_pb2.PRODUCER_CORE,
        trade_executed=core_events_pb2.TradeExecuted(
            trade_id=trade.trade_id,
            base_asset=base,
            quote_asset=quote,
            price=trade.price,
            quantity=trade.quantity,
            quote_quantity=trade.quote_quantity,
            taker_side=trade.taker_side,  # type: ignore[arg-type]
        ),
    ).SerializeToString()


@dataclass
class Expected:
    """The newest candle of each minute and the newest candle and ticker of each market."""

    candles: dict[tuple[str, int], Candle] = field(default_factory=dict)
    latest_candle: dict[str, Candle] = field(default_factory=dict)
    ticker: dict[str, Ticker] = field(default_factory=dict)


def expected_results(trades: Iterable[Trade], *, lateness_ns: int = 5 * 10**9) -> Expected:
    """What the rules give for `trades` in this order (one input partition)."""
    states = MemoryStates()
    partition = PartitionAggregator(
        market_state=states.market, partition_state=states.partition, lateness_ns=lateness_ns
    )
    expected = Expected()
    for trade in trades:
        for updates in partition.apply(trade):
            for candle in updates.candles:
                expected.candles[(candle.symbol, candle.open_time_ns)] = candle
                expected.latest_candle[candle.symbol] = candle
            if updates.ticker is not None:
                expected.ticker[updates.ticker.symbol] = updates.ticker
    return expected
