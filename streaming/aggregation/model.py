"""The values the aggregation rules take and give: trades in, candles and tickers out.

Prices in quote minor units per whole base unit, quantities in base minor units, quote
quantities (notional) in quote minor units, times in nanoseconds since the Unix epoch
(UTC), sequence numbers = the market's event sequence (`EventEnvelope.seq`). Integers only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

NANOSECONDS_PER_SECOND: Final = 1_000_000_000
MINUTE_NS: Final = 60 * NANOSECONDS_PER_SECOND
WINDOW_MINUTES: Final = 24 * 60  # the ticker's rolling window, in 1-minute buckets
BASIS_POINTS: Final = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Trade:
    """One TradeExecuted as the market-data side needs it (no accounts, no order ids)."""

    symbol: str
    seq: int  # the market's event sequence number of the trade
    trade_id: str
    price: int
    quantity: int
    quote_quantity: int  # exact notional as the core computed it
    taker_side: int  # exchange.common.v1.Side number
    executed_at_ns: int  # the engine's time of the command that traded
    event_id: str = ""
    engine_seq: int = 0
    shard_id: str = ""
    correlation_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Candle:
    """A 1-minute OHLCV candle: [open_time_ns, close_time_ns).

    `version` grows with every change of the market's aggregation state (2 * applied trades,
    + 1 once final), so a store that keeps the highest version keeps the newest candle.
    """

    symbol: str
    open_time_ns: int
    close_time_ns: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote_volume: int
    trade_count: int
    first_trade_seq: int
    last_trade_seq: int
    final: bool
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticker:
    """Rolling 24h statistics of one market over [window_start_ns, window_end_ns).

    `version` = the market's applied trade count (grows with every update).
    """

    symbol: str
    open: int
    high: int
    low: int
    last: int
    volume: int
    quote_volume: int
    change: int
    change_bps: int
    trade_count: int
    window_start_ns: int
    window_end_ns: int
    last_trade_seq: int
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Updates:
    """What one trade (or a watermark) changed: candles in order, the ticker, the trade."""

    candles: tuple[Candle, ...] = ()
    ticker: Ticker | None = None
    trade: Trade | None = None  # the trade when it was applied (not a duplicate)
    dropped: bool = False  # the trade was a duplicate, or too late for a final candle


def change_bps(open_price: int, last_price: int) -> int:
    """(last - open) / open in basis points, rounded toward zero (0 when open is 0)."""
    if open_price <= 0:
        return 0
    difference = last_price - open_price
    magnitude = abs(difference) * BASIS_POINTS // open_price
    return magnitude if difference >= 0 else -magnitude
