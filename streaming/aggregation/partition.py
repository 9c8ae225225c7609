"""Every market of one input partition: the per-market rules plus the partition watermark.

The watermark is event time, so a replay finalizes the same candles at the same points:
the newest `executed_at_ns` seen on the partition (all markets of a core shard share the
engine's clock) minus the allowed lateness. When it passes the close time of another
market's open candle, that candle becomes final (rule 2 of market.py) even though the market
itself is idle. The partition keeps an index `symbol -> open candle close time` in its own
state (key `w`: [watermark_ns, {symbol: close_ns}]).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from streaming.aggregation.market import KeyValueState, MarketAggregator
from streaming.aggregation.model import Trade, Updates

WATERMARK_KEY: Final = "w"
LATENESS_NS_DEFAULT: Final = 5 * 1_000_000_000


class PartitionAggregator:
    """Applies trades of one partition; `market_state(symbol)` gives a market's state."""

    def __init__(
        self,
        *,
        market_state: Callable[[str], KeyValueState],
        partition_state: KeyValueState,
        lateness_ns: int = LATENESS_NS_DEFAULT,
    ) -> None:
        if lateness_ns < 0:
            raise ValueError("lateness_ns must be >= 0")
        self.market_state = market_state
        self.partition_state = partition_state
        self.lateness_ns = lateness_ns

    def apply(self, trade: Trade) -> list[Updates]:
        """The trade's own updates first, then candles the watermark finalized."""
        market = MarketAggregator(trade.symbol, self.market_state(trade.symbol))
        updates = [market.apply(trade)]
        stored = self.partition_state.get(WATERMARK_KEY)
        watermark_ns, open_closes = (stored[0], dict(stored[1])) if stored else (0, {})
        watermark_ns = max(watermark_ns, trade.executed_at_ns - self.lateness_ns)
        close_ns = market.open_candle_close_ns()
        if close_ns is None:
            open_closes.pop(trade.symbol, None)
        else:
            open_closes[trade.symbol] = close_ns
        for symbol in sorted(open_closes):  # sorted: a replay emits in the same order
            if symbol == trade.symbol or open_closes[symbol] > watermark_ns:
                continue
            idle = MarketAggregator(symbol, self.market_state(symbol))
            finalized = idle.advance_watermark(watermark_ns)
            if finalized.candles:
                updates.append(finalized)
            del open_closes[symbol]
        self.partition_state.set(WATERMARK_KEY, [watermark_ns, open_closes])
        return updates
