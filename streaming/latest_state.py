"""Redis latest state for the gateway (the contract shared with it):

- `md:ticker:{SYMBOL}` = `exchange.marketdata.v1.Ticker` bytes;
- `md:candle:{SYMBOL}:1m` = the newest 1-minute `Candle` bytes (in progress or last final).

Writes are idempotent and never move backwards: beside each value a version
(`md:version:ticker:{SYMBOL}`, `md:version:candle:{SYMBOL}:1m`; see the versions in
streaming.aggregation.model) is kept, and a Lua script replaces value and version only when
the new version is higher, atomically. A replay of older data therefore cannot overwrite
newer state, and a repeated write changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import redis

from streaming.aggregation import Candle, Ticker
from streaming.codec import candle_message, ticker_message

WRITE_IF_NEWER: Final = """
local current = tonumber(redis.call('GET', KEYS[2]) or '-1')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


def ticker_key(symbol: str) -> str:
    return f"md:ticker:{symbol}"


def candle_key(symbol: str) -> str:
    return f"md:candle:{symbol}:1m"


def version_key(value_key: str) -> str:
    kind, rest = value_key.removeprefix("md:").split(":", 1)
    return f"md:version:{kind}:{rest}"


class LatestState:
    """Writes the newest candle and ticker of each market (sync client: the Quix thread)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self._script = self.client.register_script(WRITE_IF_NEWER)

    def ping(self) -> None:
        self.client.ping()

    def write(self, candles: Iterable[Candle], tickers: Iterable[Ticker]) -> int:
        """Write the newest of each key (versions decide); returns how many keys changed."""
        newest: dict[str, tuple[int, bytes]] = {}
        for candle in candles:
            key = candle_key(candle.symbol)
            if key not in newest or candle.version > newest[key][0]:
                newest[key] = (candle.version, candle_message(candle).SerializeToString())
        for ticker in tickers:
            key = ticker_key(ticker.symbol)
            if key not in newest or ticker.version > newest[key][0]:
                newest[key] = (ticker.version, ticker_message(ticker).SerializeToString())
        if not newest:
            return 0
        pipeline = self.client.pipeline(transaction=False)
        for key, (version, value) in newest.items():
            self._script(keys=[key, version_key(key)], args=[version, value], client=pipeline)
        return sum(int(changed) for changed in pipeline.execute())

    def close(self) -> None:
        self.client.close()
