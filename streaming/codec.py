"""Contracts at the streaming edges: TradeExecuted envelopes in, CandleUpdated and
TickerUpdated envelopes out (exchange.events.v1.EventEnvelope), and the marketdata messages.

Output envelopes (the contract shared with the gateway):
- `producer` = PRODUCER_MARKET_DATA, `event_version` = 1, `symbol` = the market,
  `seq` = the candle's / ticker's `last_trade_seq`;
- `event_id` deterministic, so a replay regenerates the same ids:
  `md:candle:<symbol>:1m:<open_time_ns>:<version>` and `md:ticker:<symbol>:<version>`
  (version: see streaming.aggregation.model);
- `occurred_at`, `engine_seq`, `shard_id`, `correlation_id` from the trade that caused the
  update, `causation_id` = that trade's event id.
"""

from __future__ import annotations

from typing import Final

from exchange.events.v1 import envelope_pb2, marketdata_events_pb2
from exchange.marketdata.v1 import types_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from streaming.aggregation import NANOSECONDS_PER_SECOND, Candle, Ticker, Trade

EVENT_VERSION: Final = 1


class TradeDecodeError(ValueError):
    """A record on the trade topic is not a TradeExecuted envelope we can use."""


def timestamp(ns: int) -> Timestamp:
    seconds, nanos = divmod(ns, NANOSECONDS_PER_SECOND)
    return Timestamp(seconds=seconds, nanos=nanos)


def timestamp_ns(value: Timestamp) -> int:
    return value.seconds * NANOSECONDS_PER_SECOND + value.nanos


def trade_from_envelope(data: bytes) -> Trade | None:
    """The trade of a serialized envelope; None for any other payload (ignored)."""
    envelope = envelope_pb2.EventEnvelope()
    try:
        envelope.ParseFromString(data)
    except Exception as error:
        raise TradeDecodeError(f"not an EventEnvelope: {error}") from error
    if envelope.WhichOneof("payload") != "trade_executed":
        return None
    trade = envelope.trade_executed
    if not envelope.symbol or envelope.seq == 0 or trade.price <= 0 or trade.quantity <= 0:
        raise TradeDecodeError(f"trade event {envelope.event_id!r} lacks symbol, seq or amounts")
    return Trade(
        symbol=envelope.symbol,
        seq=envelope.seq,
        trade_id=trade.trade_id,
        price=trade.price,
        quantity=trade.quantity,
        quote_quantity=trade.quote_quantity,
        taker_side=trade.taker_side,
        executed_at_ns=timestamp_ns(envelope.occurred_at),
        event_id=envelope.event_id,
        engine_seq=envelope.engine_seq,
        shard_id=envelope.shard_id,
        correlation_id=envelope.correlation_id,
    )


def candle_message(candle: Candle) -> types_pb2.Candle:
    return types_pb2.Candle(
        symbol=candle.symbol,
        interval=types_pb2.CANDLE_INTERVAL_1M,
        open_time=timestamp(candle.open_time_ns),
        close_time=timestamp(candle.close_time_ns),
        open=candle.open,
        high=candle.high,
        low=candle.low,
        close=candle.close,
        volume=candle.volume,
        quote_volume=candle.quote_volume,
        trade_count=candle.trade_count,
        first_trade_seq=candle.first_trade_seq,
        last_trade_seq=candle.last_trade_seq,
        final=candle.final,
    )


def ticker_message(ticker: Ticker) -> types_pb2.Ticker:
    """best_bid / best_ask stay 0: trades do not carry the book (the gateway's book does)."""
    return types_pb2.Ticker(
        symbol=ticker.symbol,
        open=ticker.open,
        high=ticker.high,
        low=ticker.low,
        last=ticker.last,
        volume=ticker.volume,
        quote_volume=ticker.quote_volume,
        change=ticker.change,
        change_bps=ticker.change_bps,
        trade_count=ticker.trade_count,
        window_start=timestamp(ticker.window_start_ns),
        window_end=timestamp(ticker.window_end_ns),
        last_trade_seq=ticker.last_trade_seq,
    )


def public_trade_message(trade: Trade) -> types_pb2.PublicTrade:
    return types_pb2.PublicTrade(
        trade_id=trade.trade_id,
        symbol=trade.symbol,
        price=trade.price,
        quantity=trade.quantity,
        quote_quantity=trade.quote_quantity,
        taker_side=trade.taker_side,  # type: ignore[arg-type]  # an exchange.common.v1.Side
        executed_at=timestamp(trade.executed_at_ns),
        seq=trade.seq,
    )


def candle_event_id(candle: Candle) -> str:
    return f"md:candle:{candle.symbol}:1m:{candle.open_time_ns}:{candle.version}"


def ticker_event_id(ticker: Ticker) -> str:
    return f"md:ticker:{ticker.symbol}:{ticker.version}"


def _envelope(*, event_id: str, symbol: str, seq: int, cause: Trade) -> envelope_pb2.EventEnvelope:
    return envelope_pb2.EventEnvelope(
        event_id=event_id,
        event_version=EVENT_VERSION,
        symbol=symbol,
        seq=seq,
        occurred_at=timestamp(cause.executed_at_ns),
        correlation_id=cause.correlation_id,
        causation_id=cause.event_id,
        engine_seq=cause.engine_seq,
        shard_id=cause.shard_id,
        producer=envelope_pb2.PRODUCER_MARKET_DATA,
    )


def candle_envelope(candle: Candle, *, cause: Trade) -> bytes:
    envelope = _envelope(
        event_id=candle_event_id(candle),
        symbol=candle.symbol,
        seq=candle.last_trade_seq,
        cause=cause,
    )
    envelope.candle_updated.CopyFrom(
        marketdata_events_pb2.CandleUpdated(candle=candle_message(candle))
    )
    return envelope.SerializeToString()


def ticker_envelope(ticker: Ticker, *, cause: Trade) -> bytes:
    envelope = _envelope(
        event_id=ticker_event_id(ticker),
        symbol=ticker.symbol,
        seq=ticker.last_trade_seq,
        cause=cause,
    )
    envelope.ticker_updated.CopyFrom(
        marketdata_events_pb2.TickerUpdated(ticker=ticker_message(ticker))
    )
    return envelope.SerializeToString()
