"""One market's 1-minute candles and rolling 24h ticker, from its trades, by sequence number.

Rules (docs/adr/0012-streaming-market-data.md):

1. **Sequence first.** A market's trades are ordered by their event sequence number (`seq`),
   not by their timestamps. A trade's minute is the minute of its `executed_at_ns`, but never
   earlier than the market's open candle: a trade with a higher seq and an earlier timestamp
   (a clock step back on a core failover) counts in the open candle, or, when none is open,
   in the first minute after the last final one. Volume is never lost or moved backwards.
2. **Open candle, final candles.** At most one candle per market is open (the newest
   minute). It becomes final when a trade of a later minute arrives, or when the watermark
   reaches its close time (`advance_watermark`). A final candle never changes again.
3. **Duplicates and late trades.** A trade whose seq is at or below the highest seq of the
   market's final candles (`floor`) is dropped: under the core's outbox guarantee (first
   occurrences in per-market seq order) it is a duplicate; a genuinely late trade for a
   final candle is dropped too (counted by the caller), since final candles are immutable.
   A trade above the floor that was already applied to the open candle is a duplicate
   (its seq is marked while the candle is open). A late, unseen trade (seq below the highest
   applied seq, above the floor) updates the open candle: open = price of its lowest seq,
   close = price of its highest seq, whatever the arrival order.
4. **Empty minutes** produce no candle (readers carry the previous close forward if they
   want a continuous series).
5. **Ticker** = the open candle plus the final candles of the last 1440 minutes ending with
   the open candle's minute: window [end - 24h, end) with end = the close time of the
   market's newest minute. open = the oldest candle's open, last = the newest candle's close,
   high/low/volume/quote volume/trade count over the window; older minutes roll off as the
   newest minute moves. Emitted on every applied trade.

Everything is a deterministic function of the trades in the order given: replaying the same
input gives the same updates, and the result does not depend on arrival order as long as
every trade arrives before its candle is final (property-tested). The state lives in a
`KeyValueState` (Quix's per-key state in the app, a dict in tests) under these keys:
`m` (meta: seqs, counters, the open candle, the window's running sums), `i` (minutes of the
final candles in the window), `b:<minute>` (one final candle), `S:<block>` (which seqs of the
open candle's applied trades lie in `[block * 4032, (block + 1) * 4032)`: 64 words of 63
bits, so values stay JSON integers of 64 bits; only seqs above the floor are marked, and a
seq above the highest applied one cannot be marked, so an in-order trade needs no lookup).
The cost per trade is O(1) reads and writes of small values; once per minute the index is
read and rolled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

from streaming.aggregation.model import (
    MINUTE_NS,
    WINDOW_MINUTES,
    Candle,
    Ticker,
    Trade,
    Updates,
    change_bps,
)

META_KEY: Final = "m"
INDEX_KEY: Final = "i"
SEEN_WORD_BITS: Final = 63  # bits per int of a seen-marks value (JSON: signed 64-bit)
SEEN_BLOCK_WORDS: Final = 64
SEEN_BLOCK_SEQS: Final = SEEN_WORD_BITS * SEEN_BLOCK_WORDS  # seqs per seen-marks key

# A candle in the state: [minute, open, high, low, close, volume, quote_volume, trade_count,
# first_seq, last_seq]
_MINUTE, _OPEN, _HIGH, _LOW, _CLOSE, _VOLUME, _QUOTE, _COUNT, _FIRST, _LAST = range(10)


class KeyValueState(Protocol):
    """The per-market store the rules keep their state in (JSON-able values)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...


class AggregationInvariantError(RuntimeError):
    """The stored state contradicts the rules (a bug or a foreign writer), never bad input."""


@dataclass(slots=True)
class _Meta:
    high_seq: int = 0  # highest applied seq
    floor_seq: int = 0  # highest seq of a final candle: at or below it everything is done
    applied: int = 0  # trades applied so far (the version counter)
    last_final_minute: int = -1
    open_candle: list[int] | None = None
    # Running sums over the final candles in the window (the index `i`).
    window_volume: int = 0
    window_quote_volume: int = 0
    window_trade_count: int = 0
    window_high: int = 0
    window_low: int = 0
    window_open: int = 0  # open of the oldest final candle in the window
    window_size: int = 0  # final candles in the window

    @classmethod
    def load(cls, raw: list[Any] | None) -> _Meta:
        if raw is None:
            return cls()
        return cls(*raw)

    def dump(self) -> list[Any]:
        return [
            self.high_seq,
            self.floor_seq,
            self.applied,
            self.last_final_minute,
            self.open_candle,
            self.window_volume,
            self.window_quote_volume,
            self.window_trade_count,
            self.window_high,
            self.window_low,
            self.window_open,
            self.window_size,
        ]


def _seen_key(block: int) -> str:
    return f"S:{block}"


def _bucket_key(minute: int) -> str:
    return f"b:{minute}"


def _new_candle(minute: int, trade: Trade) -> list[int]:
    price = trade.price
    return [
        minute,
        price,
        price,
        price,
        price,
        trade.quantity,
        trade.quote_quantity,
        1,
        trade.seq,
        trade.seq,
    ]


def _add_trade(candle: list[int], trade: Trade) -> None:
    price = trade.price
    candle[_HIGH] = max(candle[_HIGH], price)
    candle[_LOW] = min(candle[_LOW], price)
    candle[_VOLUME] += trade.quantity
    candle[_QUOTE] += trade.quote_quantity
    candle[_COUNT] += 1
    if trade.seq < candle[_FIRST]:
        candle[_FIRST], candle[_OPEN] = trade.seq, price
    if trade.seq > candle[_LAST]:
        candle[_LAST], candle[_CLOSE] = trade.seq, price


def candle_value(symbol: str, candle: list[int], *, final: bool, version: int) -> Candle:
    minute = candle[_MINUTE]
    return Candle(
        symbol=symbol,
        open_time_ns=minute * MINUTE_NS,
        close_time_ns=(minute + 1) * MINUTE_NS,
        open=candle[_OPEN],
        high=candle[_HIGH],
        low=candle[_LOW],
        close=candle[_CLOSE],
        volume=candle[_VOLUME],
        quote_volume=candle[_QUOTE],
        trade_count=candle[_COUNT],
        first_trade_seq=candle[_FIRST],
        last_trade_seq=candle[_LAST],
        final=final,
        version=version,
    )


class MarketAggregator:
    """The rules for one market over its state. Cheap to create per trade."""

    def __init__(self, symbol: str, state: KeyValueState) -> None:
        self.symbol = symbol
        self.state = state

    # ------------------------------------------------------------------ public

    def apply(self, trade: Trade) -> Updates:
        """Apply one trade of this market; returns the candles and ticker it changed."""
        if trade.symbol != self.symbol:
            raise AggregationInvariantError(f"trade of {trade.symbol!r} given to {self.symbol!r}")
        meta = _Meta.load(self.state.get(META_KEY))
        if trade.seq <= meta.floor_seq or (trade.seq <= meta.high_seq and self._seen(trade.seq)):
            return Updates(dropped=True)
        candles: list[Candle] = []
        open_candle = meta.open_candle
        if trade.seq < meta.high_seq:  # late, unseen, above the floor: the open candle's
            if open_candle is None:
                raise AggregationInvariantError("a seq between floor and high without a candle")
            _add_trade(open_candle, trade)
        else:
            minute = trade.executed_at_ns // MINUTE_NS
            if open_candle is not None and minute > open_candle[_MINUTE]:
                candles.append(self._finalize(meta))
                open_candle = None
            if open_candle is None:
                minute = max(minute, meta.last_final_minute + 1)
                open_candle = meta.open_candle = _new_candle(minute, trade)
                self._roll_window(meta, minute)
            else:
                _add_trade(open_candle, trade)
            meta.high_seq = trade.seq
        meta.applied += 1
        self._mark_seen(trade.seq)
        self.state.set(META_KEY, meta.dump())
        candles.append(
            candle_value(self.symbol, open_candle, final=False, version=2 * meta.applied)
        )
        return Updates(candles=tuple(candles), ticker=self._ticker(meta, open_candle), trade=trade)

    def advance_watermark(self, watermark_ns: int) -> Updates:
        """Finalize the open candle if the watermark reached its close time."""
        meta = _Meta.load(self.state.get(META_KEY))
        open_candle = meta.open_candle
        if open_candle is None or (open_candle[_MINUTE] + 1) * MINUTE_NS > watermark_ns:
            return Updates()
        final = self._finalize(meta)
        self.state.set(META_KEY, meta.dump())
        return Updates(candles=(final,))

    def open_candle_close_ns(self) -> int | None:
        """The close time of the open candle (None when every candle is final)."""
        open_candle = _Meta.load(self.state.get(META_KEY)).open_candle
        return None if open_candle is None else (open_candle[_MINUTE] + 1) * MINUTE_NS

    # ------------------------------------------------------------------ seen marks

    def _seen(self, seq: int) -> bool:
        block, offset = divmod(seq, SEEN_BLOCK_SEQS)
        words: list[int] | None = self.state.get(_seen_key(block))
        if words is None:
            return False
        word, bit = divmod(offset, SEEN_WORD_BITS)
        return bool(words[word] >> bit & 1)

    def _mark_seen(self, seq: int) -> None:
        block, offset = divmod(seq, SEEN_BLOCK_SEQS)
        key = _seen_key(block)
        words: list[int] = self.state.get(key) or [0] * SEEN_BLOCK_WORDS
        word, bit = divmod(offset, SEEN_WORD_BITS)
        words[word] |= 1 << bit
        self.state.set(key, words)

    # ------------------------------------------------------------------ candles

    def _finalize(self, meta: _Meta) -> Candle:
        """Close the open candle: store it as a bucket of the window, forget its seen marks."""
        candle = meta.open_candle
        if candle is None:
            raise AggregationInvariantError("no open candle to finalize")
        # Every marked seq is in (floor, last]: forget them all.
        for block in range(
            (meta.floor_seq + 1) // SEEN_BLOCK_SEQS, candle[_LAST] // SEEN_BLOCK_SEQS + 1
        ):
            self.state.delete(_seen_key(block))
        meta.floor_seq = candle[_LAST]
        meta.last_final_minute = candle[_MINUTE]
        meta.open_candle = None
        self.state.set(_bucket_key(candle[_MINUTE]), candle)
        index: list[int] = self.state.get(INDEX_KEY) or []
        index.append(candle[_MINUTE])
        self.state.set(INDEX_KEY, index)
        self._window_add(meta, candle)
        return candle_value(self.symbol, candle, final=True, version=2 * meta.applied + 1)

    # ------------------------------------------------------------------ ticker window

    def _window_add(self, meta: _Meta, candle: list[int]) -> None:
        if meta.window_size == 0:
            meta.window_open = candle[_OPEN]
            meta.window_high, meta.window_low = candle[_HIGH], candle[_LOW]
        else:
            meta.window_high = max(meta.window_high, candle[_HIGH])
            meta.window_low = min(meta.window_low, candle[_LOW])
        meta.window_size += 1
        meta.window_volume += candle[_VOLUME]
        meta.window_quote_volume += candle[_QUOTE]
        meta.window_trade_count += candle[_COUNT]

    def _roll_window(self, meta: _Meta, newest_minute: int) -> None:
        """Drop final candles older than the 1440 minutes ending with `newest_minute`."""
        oldest_kept = newest_minute - WINDOW_MINUTES + 1
        index: list[int] = self.state.get(INDEX_KEY) or []
        expired = 0
        while expired < len(index) and index[expired] < oldest_kept:
            expired += 1
        if expired == 0:
            return
        kept = index[expired:]
        for minute in index[:expired]:
            self.state.delete(_bucket_key(minute))
        self.state.set(INDEX_KEY, kept)
        meta.window_size = meta.window_volume = meta.window_quote_volume = 0
        meta.window_trade_count = meta.window_high = meta.window_low = meta.window_open = 0
        for minute in kept:  # at most once per minute per market: recompute from the buckets
            bucket = self.state.get(_bucket_key(minute))
            if bucket is None:
                raise AggregationInvariantError(f"bucket {minute} of {self.symbol} is missing")
            self._window_add(meta, bucket)

    def _ticker(self, meta: _Meta, open_candle: list[int]) -> Ticker:
        window_end_ns = (open_candle[_MINUTE] + 1) * MINUTE_NS
        if meta.window_size:
            open_price = meta.window_open
            high = max(meta.window_high, open_candle[_HIGH])
            low = min(meta.window_low, open_candle[_LOW])
        else:
            open_price, high, low = open_candle[_OPEN], open_candle[_HIGH], open_candle[_LOW]
        last = open_candle[_CLOSE]
        return Ticker(
            symbol=self.symbol,
            open=open_price,
            high=high,
            low=low,
            last=last,
            volume=meta.window_volume + open_candle[_VOLUME],
            quote_volume=meta.window_quote_volume + open_candle[_QUOTE],
            change=last - open_price,
            change_bps=change_bps(open_price, last),
            trade_count=meta.window_trade_count + open_candle[_COUNT],
            window_start_ns=window_end_ns - WINDOW_MINUTES * MINUTE_NS,
            window_end_ns=window_end_ns,
            last_trade_seq=meta.high_seq,
            version=meta.applied,
        )
