"""Pure market-data aggregation: 1-minute candles and rolling 24h tickers from trades.

No I/O, no clock (ruff.toml bans them here); streaming/app.py wires these rules to Quix.
"""

from streaming.aggregation.market import (
    AggregationInvariantError,
    KeyValueState,
    MarketAggregator,
)
from streaming.aggregation.memory import MemoryState, MemoryStates
from streaming.aggregation.model import (
    MINUTE_NS,
    NANOSECONDS_PER_SECOND,
    WINDOW_MINUTES,
    Candle,
    Ticker,
    Trade,
    Updates,
    change_bps,
)
from streaming.aggregation.partition import LATENESS_NS_DEFAULT, PartitionAggregator
from streaming.aggregation.write_back import WriteBackState

__all__ = [
    "LATENESS_NS_DEFAULT",
    "MINUTE_NS",
    "NANOSECONDS_PER_SECOND",
    "WINDOW_MINUTES",
    "AggregationInvariantError",
    "Candle",
    "KeyValueState",
    "MarketAggregator",
    "MemoryState",
    "MemoryStates",
    "PartitionAggregator",
    "Ticker",
    "Trade",
    "Updates",
    "WriteBackState",
    "change_bps",
]
