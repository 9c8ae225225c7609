"""A local copy of one market's aggregated order book, kept from a snapshot plus diffs.

Invariants (checked by tests/unit/sdk/test_local_order_book.py with crafted frames):
- The book is either out of sync (no snapshot yet, or a gap seen) or in sync at ``seq``:
  the state of the exchange's book after its event ``seq``.
- A diff applies only when its ``previous_seq`` equals ``seq``; then ``seq`` becomes the
  diff's ``seq``. A diff whose ``seq`` is not above ``seq`` is stale (a duplicate, or one
  the snapshot already contains) and is ignored. Any other diff is a gap: the book goes out
  of sync and keeps the diffs that arrive until a new snapshot.
- A snapshot at ``S`` replaces everything; the held diffs up to ``S`` are dropped and the
  ones after it are applied if they chain from ``S`` (else the book stays out of sync).
- A level with quantity 0 in a diff is removed; prices and quantities are integers in
  minor units inside, ``Decimal`` through ``MarketSpec`` at the accessors. No I/O here:
  ``exchange_sdk.websocket.BookFeed`` fetches snapshots when ``needs_snapshot`` is set.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from exchange.common.v1 import types_pb2
from exchange.marketdata.v1 import types_pb2 as marketdata_types_pb2
from exchange.websocket.v1 import websocket_pb2

from exchange_sdk.models import BookLevel, MarketSpec

PENDING_DIFFS_MAX: Final = 10_000


class DiffOutcome(enum.Enum):
    APPLIED = "applied"
    # seq not above the book's: already contained; ignored.
    STALE = "stale"
    # previous_seq does not chain: out of sync until a snapshot.
    GAP = "gap"
    # Out of sync: kept for after the next snapshot.
    HELD = "held"


@dataclass(frozen=True)
class LevelUpdate:
    price: int
    quantity: int
    order_count: int = 0


@dataclass(frozen=True)
class BookDiff:
    seq: int
    previous_seq: int
    bids: tuple[LevelUpdate, ...] = ()
    asks: tuple[LevelUpdate, ...] = ()

    @classmethod
    def from_proto(cls, message: websocket_pb2.BookUpdate) -> BookDiff:
        return cls(
            seq=message.seq,
            previous_seq=message.previous_seq,
            bids=_levels(message.bids),
            asks=_levels(message.asks),
        )


@dataclass(frozen=True)
class BookSnapshot:
    seq: int
    bids: tuple[LevelUpdate, ...]
    asks: tuple[LevelUpdate, ...]

    @classmethod
    def from_proto(cls, message: marketdata_types_pb2.OrderBook) -> BookSnapshot:
        return cls(seq=message.seq, bids=_levels(message.bids), asks=_levels(message.asks))


def _levels(levels: Iterable[types_pb2.PriceLevel]) -> tuple[LevelUpdate, ...]:
    return tuple(LevelUpdate(level.price, level.quantity, level.order_count) for level in levels)


class LocalOrderBook:
    """One market's book, from ``apply_snapshot`` and ``apply_diff``."""

    def __init__(self, market: MarketSpec, *, pending_diffs_max: int = PENDING_DIFFS_MAX) -> None:
        self.market = market
        self.seq = 0
        self.in_sync = False
        self.gaps = 0
        self._bids: dict[int, LevelUpdate] = {}
        self._asks: dict[int, LevelUpdate] = {}
        self._pending: list[BookDiff] = []
        self._pending_max = pending_diffs_max

    @property
    def needs_snapshot(self) -> bool:
        return not self.in_sync

    def invalidate(self) -> None:
        """Out of sync until the next snapshot (e.g. the connection was lost: diffs were
        missed); the diffs held so far are dropped (a new subscription starts afresh)."""
        self.in_sync = False
        self._pending = []

    def apply_snapshot(self, snapshot: BookSnapshot) -> None:
        self._bids = {level.price: level for level in snapshot.bids if level.quantity > 0}
        self._asks = {level.price: level for level in snapshot.asks if level.quantity > 0}
        self.seq = snapshot.seq
        self.in_sync = True
        pending, self._pending = self._pending, []
        for diff in sorted(pending, key=lambda held: held.seq):
            self.apply_diff(diff)

    def apply_diff(self, diff: BookDiff) -> DiffOutcome:
        if not self.in_sync:
            if len(self._pending) >= self._pending_max:
                self._pending.pop(0)  # bounded: the oldest cannot matter after a resync
            self._pending.append(diff)
            return DiffOutcome.HELD
        if diff.seq <= self.seq:
            return DiffOutcome.STALE
        if diff.previous_seq != self.seq:
            self.in_sync = False
            self.gaps += 1
            self._pending = [diff]
            return DiffOutcome.GAP
        _merge(self._bids, diff.bids)
        _merge(self._asks, diff.asks)
        self.seq = diff.seq
        return DiffOutcome.APPLIED

    # ---- reading, in whole units ----
    def bids(self, depth: int | None = None) -> tuple[BookLevel, ...]:
        """Best first (highest price first)."""
        return self._view(sorted(self._bids, reverse=True), self._bids, depth)

    def asks(self, depth: int | None = None) -> tuple[BookLevel, ...]:
        """Best first (lowest price first)."""
        return self._view(sorted(self._asks), self._asks, depth)

    def best_bid(self) -> BookLevel | None:
        levels = self.bids(1)
        return levels[0] if levels else None

    def best_ask(self) -> BookLevel | None:
        levels = self.asks(1)
        return levels[0] if levels else None

    def spread(self) -> Decimal | None:
        bid, ask = self.best_bid(), self.best_ask()
        return None if bid is None or ask is None else ask.price - bid.price

    def _view(
        self, prices: list[int], side: dict[int, LevelUpdate], depth: int | None
    ) -> tuple[BookLevel, ...]:
        chosen = prices if depth is None else prices[:depth]
        return tuple(
            BookLevel(
                self.market.price(price),
                self.market.quantity(side[price].quantity),
                side[price].order_count,
            )
            for price in chosen
        )


def _merge(side: dict[int, LevelUpdate], changes: Iterable[LevelUpdate]) -> None:
    for change in changes:
        if change.quantity == 0:
            side.pop(change.price, None)
        else:
            side[change.price] = change
