"""The market-data projection: the core's event log (`core.events.v1`) folded into what the
edge serves — reference data, aggregated L2 books, recent public trades, and the private
order / fill / balance updates of each account. Pure: no I/O, no clock; the consumer
(gateway/market_data/consumer.py) feeds it envelopes and publishes what it returns.

Invariants (backed by tests/unit/gateway/test_market_data_projection.py and the property
test against the real engine, tests/property/gateway/test_projection_matches_engine.py):
1. After every whole command, each book's levels equal the engine's own (`book_depth`):
   price, aggregate resting quantity and order count, best first.
2. A book's `seq` is the market's sequence number of the last applied event of that market;
   events at or below it are duplicates (at-least-once delivery) and change nothing.
3. Resting quantity is exact without reading the engine: an order enters the book only when
   its command ends (a LIMIT GTC order, or a re-queued amend, still working with quantity
   left); `TradeExecuted.maker_remaining_quantity` / `taker_remaining_quantity`,
   `OrderAmended.remaining_quantity` and `OrderCancelled.cancelled_quantity` give every
   change. No event lacks a field for this: a taker's remainder is the last trade's
   `taker_remaining_quantity` (or its quantity with no trade), and "it rested" is implied by
   "LIMIT GTC, not cancelled/expired, remainder > 0" — which is why a command's events are
   applied as a unit (`end_command`, called when the engine_seq changes and at the end of
   every fetched batch: the outbox publishes a command's events in one record batch).
4. Each command that advances a market's seq yields exactly one BookUpdate for it, from
   the seq before the command to the seq after (levels may be empty), so a client's
   `previousSeq` always equals the last seq it saw — from a snapshot or a diff.
5. Balances follow the engine's arithmetic (reserve, release, trade with fees, funding);
   the property test compares every account's available/held with the engine's.
6. Memory is bounded: live orders only (closed orders are forgotten at once), at most
   `trades_per_symbol_max` trades per symbol.
7. `restore(snapshot)` (the core's GetProjectionSnapshot, docs/adr/0017) sets the state to
   the engine's after one command: every stream's seq, so the events at or below it that the
   log still holds are skipped as duplicates (invariant 2) and the first one after it is
   applied, and the result equals the projection that had read every event. Each book whose
   seq moves gets one BookUpdate from its old seq to the snapshot's with every changed
   level (a subscriber's chain holds across a re-snapshot), each changed balance an update.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from exchange.common.v1 import types_pb2
from exchange.core.v1 import core_admin_pb2
from exchange.events.v1 import core_events_pb2, envelope_pb2
from exchange.marketdata.v1 import types_pb2 as marketdata_types_pb2
from exchange.websocket.v1 import websocket_pb2

# The core's fee account (core/engine/balances.py); fees of both sides are credited to it.
FEE_ACCOUNT_ID: Final = "exchange:fees"
TRADES_PER_SYMBOL_MAX_DEFAULT: Final = 1_000

EventEnvelope = envelope_pb2.EventEnvelope
ProjectionSnapshot = core_admin_pb2.GetProjectionSnapshotResponse
PriceLevels = dict[int, list[int]]  # price -> [quantity, order count]

_BUY: Final = types_pb2.SIDE_BUY
_SELL: Final = types_pb2.SIDE_SELL
_ORDER_PAYLOADS: Final = {
    "order_accepted": "accepted",
    "order_rejected": "rejected",
    "order_amended": "amended",
    "order_cancelled": "cancelled",
    "order_expired": "expired",
}


class ProjectionError(RuntimeError):
    """The event stream contradicts the projection (an invariant breach, never bad input)."""


@dataclass(frozen=True, slots=True)
class PublicUpdate:
    """A message for a public channel (`trades:<SYMBOL>`, `book:<SYMBOL>`)."""

    channel: str
    message: websocket_pb2.ServerMessage


@dataclass(frozen=True, slots=True)
class PrivateUpdate:
    """A message for one account's `orders`, `fills` or `balances` channel."""

    kind: str
    account_id: str
    message: websocket_pb2.ServerMessage


Update = PublicUpdate | PrivateUpdate


@dataclass(slots=True)
class _Order:
    """A live order: resting, or the taker of the command being applied."""

    order_id: str
    account_id: str
    client_order_id: str
    symbol: str
    side: int
    price: int
    remaining: int
    can_rest: bool  # LIMIT GTC (amended orders are always)
    in_book: bool = False


@dataclass(slots=True)
class Book:
    """One market's aggregated book and reference data."""

    market: types_pb2.Market
    seq: int = 0
    as_of_seconds: int = 0
    as_of_nanos: int = 0
    bids: PriceLevels = field(default_factory=dict)
    asks: PriceLevels = field(default_factory=dict)
    trades: deque[marketdata_types_pb2.PublicTrade] = field(default_factory=deque)
    # Highest trade seq dropped from `trades` (0: nothing dropped yet).
    trades_dropped_seq: int = 0

    def side(self, side: int) -> PriceLevels:
        return self.bids if side == _BUY else self.asks

    def levels(self, side: int, depth: int) -> list[types_pb2.PriceLevel]:
        """Best first: bids descending, asks ascending; at most `depth` levels."""
        levels = self.side(side)
        prices = sorted(levels, reverse=side == _BUY)[:depth]
        return [
            types_pb2.PriceLevel(
                price=price, quantity=levels[price][0], order_count=levels[price][1]
            )
            for price in prices
        ]

    def best(self, side: int) -> int:
        levels = self.side(side)
        if not levels:
            return 0
        return max(levels) if side == _BUY else min(levels)

    def snapshot(self, depth: int) -> marketdata_types_pb2.OrderBook:
        book = marketdata_types_pb2.OrderBook(
            symbol=self.market.symbol,
            seq=self.seq,
            bids=self.levels(_BUY, depth),
            asks=self.levels(_SELL, depth),
        )
        book.as_of.seconds = self.as_of_seconds
        book.as_of.nanos = self.as_of_nanos
        return book


@dataclass(slots=True)
class _Command:
    """What one command (one engine_seq of one shard) changed, until it ends."""

    key: tuple[str, int]
    engine_seq: int
    takers: list[_Order] = field(default_factory=list)
    # symbol -> (seq before the command, changed bid prices, changed ask prices)
    books: dict[str, tuple[int, set[int], set[int]]] = field(default_factory=dict)
    balances: set[tuple[str, str]] = field(default_factory=set)


class MarketDataProjection:
    """Folds core EventEnvelopes, in each shard's engine order, into books, trades, reference
    data and balances; `apply` returns the WebSocket updates each envelope caused."""

    def __init__(self, *, trades_per_symbol_max: int = TRADES_PER_SYMBOL_MAX_DEFAULT) -> None:
        if trades_per_symbol_max < 1:
            message = "trades_per_symbol_max must be >= 1"
            raise ValueError(message)
        self.trades_per_symbol_max = trades_per_symbol_max
        self.assets: dict[str, types_pb2.Asset] = {}
        self.books: dict[str, Book] = {}
        self.balances: dict[tuple[str, str], list[int]] = {}  # (account, asset) -> [avail, held]
        self._orders: dict[str, _Order] = {}
        self._account_seqs: dict[str, int] = {}  # shard -> last account-stream seq applied
        self._command: _Command | None = None
        self.events_applied = 0
        self.duplicates_skipped = 0
        self.gaps_seen = 0
        self.snapshots_restored = 0

    # ------------------------------------------------------------------ reads

    def book(self, symbol: str) -> Book | None:
        return self.books.get(symbol)

    def balance(self, account_id: str, asset: str) -> tuple[int, int]:
        available, held = self.balances.get((account_id, asset), (0, 0))
        return available, held

    @property
    def live_orders(self) -> int:
        return len(self._orders)

    # ------------------------------------------------------------------ writes

    def apply_all(self, envelopes: Iterable[EventEnvelope]) -> list[Update]:
        """Applies a fetched batch in order and ends its last command."""
        updates: list[Update] = []
        for envelope in envelopes:
            updates.extend(self.apply(envelope))
        updates.extend(self.end_command())
        return updates

    def apply(self, envelope: EventEnvelope) -> list[Update]:
        """Applies one event; the updates of a finished earlier command come first."""
        updates: list[Update] = []
        key = (envelope.shard_id, envelope.engine_seq)
        if self._command is not None and self._command.key != key:
            updates.extend(self.end_command())
        if not self._is_new(envelope):
            self.duplicates_skipped += 1
            return updates
        if self._command is None:
            self._command = _Command(key=key, engine_seq=envelope.engine_seq)
        self.events_applied += 1
        updates.extend(self._apply_payload(envelope, self._command))
        return updates

    def end_command(self) -> list[Update]:
        """Rests the command's surviving LIMIT GTC takers and emits its book diffs and
        balance updates. Idempotent; called by `apply` when the engine_seq changes."""
        command, self._command = self._command, None
        if command is None:
            return []
        for order in command.takers:
            if self._orders.get(order.order_id) is not order:
                continue  # cancelled or expired within the command
            if order.can_rest and order.remaining > 0:
                self._add_to_book(order, command)
            else:
                del self._orders[order.order_id]
        updates: list[Update] = []
        for symbol, (previous_seq, bid_prices, ask_prices) in command.books.items():
            book = self.books[symbol]
            message = websocket_pb2.ServerMessage()
            diff = message.book_update
            diff.symbol = symbol
            diff.previous_seq = previous_seq
            diff.seq = book.seq
            diff.bids.extend(_changed(book.bids, bid_prices, reverse=True))
            diff.asks.extend(_changed(book.asks, ask_prices, reverse=False))
            updates.append(PublicUpdate(f"book:{symbol}", message))
        for account_id, asset in sorted(command.balances):
            available, held = self.balance(account_id, asset)
            updates.append(_balance_update(account_id, asset, available, held, command.engine_seq))
        return updates

    def restore(self, snapshot: ProjectionSnapshot) -> list[Update]:
        """Takes the shard's state from `snapshot` (invariant 7); returns the updates that
        bring subscribers from the state before to the snapshot's."""
        updates = self.end_command()
        for asset in snapshot.assets:
            copy = types_pb2.Asset()
            copy.CopyFrom(asset)
            self.assets[copy.asset] = copy
        symbols = {market.market.symbol for market in snapshot.markets}
        for order_id in [o.order_id for o in self._orders.values() if o.symbol in symbols]:
            del self._orders[order_id]
        levels: dict[str, tuple[PriceLevels, PriceLevels]] = {s: ({}, {}) for s in symbols}
        for resting in snapshot.orders:
            order = _Order(
                order_id=resting.order_id,
                account_id=resting.account_id,
                client_order_id=resting.client_order_id,
                symbol=resting.symbol,
                side=resting.side,
                price=resting.price,
                remaining=resting.remaining_quantity,
                can_rest=True,
                in_book=True,
            )
            self._orders[order.order_id] = order
            level = levels[order.symbol][0 if order.side == _BUY else 1].setdefault(
                order.price, [0, 0]
            )
            level[0] += order.remaining
            level[1] += 1
        for entry in snapshot.markets:
            market = types_pb2.Market()
            market.CopyFrom(entry.market)
            symbol = market.symbol
            book = self.books.get(symbol)
            if book is None:
                book = self.books[symbol] = Book(market=market)
            previous_seq = book.seq
            old_bids, old_asks = book.bids, book.asks
            book.market = market
            book.bids, book.asks = levels[symbol]
            book.as_of_seconds = snapshot.taken_at.seconds
            book.as_of_nanos = snapshot.taken_at.nanos
            if entry.seq != previous_seq:
                # The trades up to the snapshot are the history service's (ListTrades).
                book.trades.clear()
                book.trades_dropped_seq = entry.seq
                book.seq = entry.seq
                message = websocket_pb2.ServerMessage()
                diff = message.book_update
                diff.symbol = symbol
                diff.previous_seq = previous_seq
                diff.seq = entry.seq
                diff.bids.extend(_changed(book.bids, set(old_bids) | set(book.bids), reverse=True))
                diff.asks.extend(_changed(book.asks, set(old_asks) | set(book.asks), reverse=False))
                updates.append(PublicUpdate(f"book:{symbol}", message))
        self._account_seqs[snapshot.shard_id] = snapshot.account_stream_seq
        for balance in snapshot.balances:
            key = (balance.account_id, balance.asset)
            before = self.balances.get(key)
            self.balances[key] = [balance.available, balance.held]
            if before == [balance.available, balance.held]:
                continue
            updates.append(
                _balance_update(
                    balance.account_id,
                    balance.asset,
                    balance.available,
                    balance.held,
                    snapshot.engine_seq,
                )
            )
        self.snapshots_restored += 1
        return updates

    def open_orders(self) -> list[tuple[str, str, str, int, int, int]]:
        """Every resting order as (order id, account, symbol, side, price, remaining)."""
        return sorted(
            (o.order_id, o.account_id, o.symbol, o.side, o.price, o.remaining)
            for o in self._orders.values()
            if o.in_book
        )

    # ------------------------------------------------------------------ internals

    def _is_new(self, envelope: EventEnvelope) -> bool:
        """Dedupe by stream position (invariant 2); a jump forward is counted as a gap."""
        if envelope.symbol:
            book = self.books.get(envelope.symbol)
            last = 0 if book is None else book.seq
        else:
            last = self._account_seqs.get(envelope.shard_id, 0)
        if envelope.seq <= last:
            return False
        if envelope.seq != last + 1:
            self.gaps_seen += 1
        return True

    def _touch(self, envelope: EventEnvelope, command: _Command) -> Book | None:
        """Moves the event's stream position; returns the market's book (None: account event)."""
        if not envelope.symbol:
            self._account_seqs[envelope.shard_id] = envelope.seq
            return None
        book = self.books.get(envelope.symbol)
        if book is None:
            message = f"event {envelope.event_id} of unknown market {envelope.symbol!r}"
            raise ProjectionError(message)
        if envelope.symbol not in command.books:
            command.books[envelope.symbol] = (book.seq, set(), set())
        book.seq = envelope.seq
        book.as_of_seconds = envelope.occurred_at.seconds
        book.as_of_nanos = envelope.occurred_at.nanos
        return book

    def _apply_payload(self, envelope: EventEnvelope, command: _Command) -> Iterator[Update]:
        kind = envelope.WhichOneof("payload")
        if kind == "market_created":
            market = types_pb2.Market()
            market.CopyFrom(envelope.market_created.market)
            self.books[market.symbol] = Book(market=market)
        book = self._touch(envelope, command)
        if kind == "asset_created":
            asset = types_pb2.Asset()
            asset.CopyFrom(envelope.asset_created.asset)
            self.assets[asset.asset] = asset
        elif kind == "market_mode_changed" and book is not None:
            book.market.mode = envelope.market_mode_changed.mode
        elif kind == "order_accepted":
            self._accepted(envelope, command)
        elif kind == "trade_executed" and book is not None:
            yield from self._traded(envelope, book, command)
        elif kind == "order_amended":
            self._amended(envelope, command)
        elif kind in {"order_cancelled", "order_expired"}:
            payload = getattr(envelope, kind)
            self._closed(payload.order_id, command)
        elif kind in {"funds_reserved", "funds_released"}:
            payload = getattr(envelope, kind)
            sign = 1 if kind == "funds_reserved" else -1
            self._move(payload.account_id, payload.asset, -sign * payload.amount, command)
            self._hold(payload.account_id, payload.asset, sign * payload.amount, command)
        elif kind == "funds_deposited":
            payload = envelope.funds_deposited
            self._move(payload.account_id, payload.asset, payload.amount, command)
        elif kind == "funds_withdrawn":
            payload = envelope.funds_withdrawn
            self._move(payload.account_id, payload.asset, -payload.amount, command)
        elif kind == "balance_adjusted":
            payload = envelope.balance_adjusted
            self._move(payload.account_id, payload.asset, payload.amount, command)
        if kind in _ORDER_PAYLOADS:
            payload = getattr(envelope, kind)
            message = websocket_pb2.ServerMessage()
            message.order.seq = envelope.seq
            message.order.symbol = envelope.symbol
            getattr(message.order, _ORDER_PAYLOADS[kind]).CopyFrom(payload)
            yield PrivateUpdate("orders", payload.account_id, message)

    def _accepted(self, envelope: EventEnvelope, command: _Command) -> None:
        accepted = envelope.order_accepted
        order = _Order(
            order_id=accepted.order_id,
            account_id=accepted.account_id,
            client_order_id=accepted.client_order_id,
            symbol=envelope.symbol,
            side=accepted.side,
            price=accepted.price,
            remaining=accepted.quantity,
            can_rest=accepted.order_type == types_pb2.ORDER_TYPE_LIMIT
            and accepted.time_in_force == types_pb2.TIME_IN_FORCE_GTC,
        )
        self._orders[order.order_id] = order
        command.takers.append(order)

    def _traded(self, envelope: EventEnvelope, book: Book, command: _Command) -> Iterator[Update]:
        trade = envelope.trade_executed
        maker = self._orders.get(trade.maker_order_id)
        if maker is None or not maker.in_book:
            problem = f"trade {trade.trade_id}: maker {trade.maker_order_id} is not resting"
            raise ProjectionError(problem)
        if maker.remaining - trade.quantity != trade.maker_remaining_quantity:
            problem = f"trade {trade.trade_id}: maker remainder disagrees with the book"
            raise ProjectionError(problem)
        maker.remaining = trade.maker_remaining_quantity
        if maker.remaining == 0:  # filled: the level loses the quantity and the order at once
            self._change_level(book, maker, -trade.quantity, -1, command)
            maker.in_book = False
            del self._orders[maker.order_id]
        else:
            self._change_level(book, maker, -trade.quantity, 0, command)
        taker = self._orders.get(trade.taker_order_id)
        if taker is not None:
            taker.remaining = trade.taker_remaining_quantity
        market = book.market
        market.reference_price = trade.price
        self._settle(trade, market.base_asset, market.quote_asset, command)
        public = marketdata_types_pb2.PublicTrade(
            trade_id=trade.trade_id,
            symbol=envelope.symbol,
            price=trade.price,
            quantity=trade.quantity,
            quote_quantity=trade.quote_quantity,
            taker_side=trade.taker_side,
            seq=envelope.seq,
        )
        public.executed_at.CopyFrom(envelope.occurred_at)
        book.trades.append(public)
        if len(book.trades) > self.trades_per_symbol_max:
            book.trades_dropped_seq = book.trades.popleft().seq
        message = websocket_pb2.ServerMessage()
        message.trade.trade.CopyFrom(public)
        yield PublicUpdate(f"trades:{envelope.symbol}", message)
        maker_side = _SELL if trade.taker_side == _BUY else _BUY
        for account_id, order_id, client_order_id, side, liquidity, fee, remaining in (
            (
                trade.maker_account_id,
                trade.maker_order_id,
                trade.maker_client_order_id or maker.client_order_id,
                maker_side,
                types_pb2.LIQUIDITY_MAKER,
                trade.maker_fee,
                trade.maker_remaining_quantity,
            ),
            (
                trade.taker_account_id,
                trade.taker_order_id,
                trade.taker_client_order_id or (taker.client_order_id if taker else ""),
                trade.taker_side,
                types_pb2.LIQUIDITY_TAKER,
                trade.taker_fee,
                trade.taker_remaining_quantity,
            ),
        ):
            message = websocket_pb2.ServerMessage()
            fill = message.fill
            fill.trade_id = trade.trade_id
            fill.order_id = order_id
            fill.client_order_id = client_order_id
            fill.symbol = envelope.symbol
            fill.side = side
            fill.liquidity = liquidity
            fill.price = trade.price
            fill.quantity = trade.quantity
            fill.quote_quantity = trade.quote_quantity
            fill.fee = fee
            fill.fee_asset = trade.quote_asset
            fill.remaining_quantity = remaining
            fill.executed_at.CopyFrom(envelope.occurred_at)
            yield PrivateUpdate("fills", account_id, message)

    def _settle(
        self,
        trade: core_events_pb2.TradeExecuted,
        base_asset: str,
        quote_asset: str,
        command: _Command,
    ) -> None:
        """The engine's settlement of one fill: the buyer pays quote + its fee from held and
        gets base; the seller pays base from held and gets quote - its fee; fees to the
        fee account."""
        if trade.taker_side == _BUY:
            buyer, buyer_fee = trade.taker_account_id, trade.taker_fee
            seller, seller_fee = trade.maker_account_id, trade.maker_fee
        else:
            buyer, buyer_fee = trade.maker_account_id, trade.maker_fee
            seller, seller_fee = trade.taker_account_id, trade.taker_fee
        self._hold(buyer, quote_asset, -(trade.quote_quantity + buyer_fee), command)
        self._move(buyer, base_asset, trade.quantity, command)
        self._hold(seller, base_asset, -trade.quantity, command)
        self._move(seller, quote_asset, trade.quote_quantity - seller_fee, command)
        self._move(FEE_ACCOUNT_ID, quote_asset, buyer_fee + seller_fee, command)

    def _amended(self, envelope: EventEnvelope, command: _Command) -> None:
        amended = envelope.order_amended
        order = self._live(amended.order_id)
        book = self.books[order.symbol]
        if amended.priority_kept:  # same price, quantity down: in place
            self._change_level(
                book, order, amended.remaining_quantity - order.remaining, 0, command
            )
            order.remaining = amended.remaining_quantity
            return
        # Re-queued: out of the book; it may trade, then rests when the command ends.
        self._remove_from_book(order, command, forget=False)
        order.price = amended.price
        order.remaining = amended.remaining_quantity
        order.can_rest = True
        command.takers.append(order)

    def _closed(self, order_id: str, command: _Command) -> None:
        order = self._live(order_id)
        if order.in_book:
            self._remove_from_book(order, command)
        else:
            del self._orders[order_id]

    def _live(self, order_id: str) -> _Order:
        order = self._orders.get(order_id)
        if order is None:
            message = f"order {order_id} is not live in the projection"
            raise ProjectionError(message)
        return order

    def _add_to_book(self, order: _Order, command: _Command) -> None:
        order.in_book = True
        self._change_level(self.books[order.symbol], order, order.remaining, 1, command)

    def _remove_from_book(self, order: _Order, command: _Command, *, forget: bool = True) -> None:
        if order.in_book:
            self._change_level(self.books[order.symbol], order, -order.remaining, -1, command)
            order.in_book = False
        if forget:
            del self._orders[order.order_id]

    def _change_level(
        self, book: Book, order: _Order, quantity: int, count: int, command: _Command
    ) -> None:
        levels = book.side(order.side)
        level = levels.setdefault(order.price, [0, 0])
        level[0] += quantity
        level[1] += count
        if level[0] < 0 or level[1] < 0 or (level[0] == 0) != (level[1] == 0):
            message = f"level {order.price} of {book.market.symbol} became {level}"
            raise ProjectionError(message)
        if level[1] == 0:
            del levels[order.price]
        changed = command.books.setdefault(book.market.symbol, (book.seq, set(), set()))
        (changed[1] if order.side == _BUY else changed[2]).add(order.price)

    def _move(self, account_id: str, asset: str, amount: int, command: _Command) -> None:
        cell = self.balances.setdefault((account_id, asset), [0, 0])
        cell[0] += amount
        command.balances.add((account_id, asset))

    def _hold(self, account_id: str, asset: str, amount: int, command: _Command) -> None:
        cell = self.balances.setdefault((account_id, asset), [0, 0])
        cell[1] += amount
        command.balances.add((account_id, asset))


def _balance_update(
    account_id: str, asset: str, available: int, held: int, engine_seq: int
) -> PrivateUpdate:
    message = websocket_pb2.ServerMessage()
    message.balance.balance.asset = asset
    message.balance.balance.available = available
    message.balance.balance.held = held
    message.balance.engine_seq = engine_seq
    return PrivateUpdate("balances", account_id, message)


def _changed(levels: PriceLevels, prices: set[int], *, reverse: bool) -> list[types_pb2.PriceLevel]:
    """The new state of each changed price (quantity 0: the level is gone), best first."""
    changed = []
    for price in sorted(prices, reverse=reverse):
        quantity, count = levels.get(price, (0, 0))
        changed.append(types_pb2.PriceLevel(price=price, quantity=quantity, order_count=count))
    return changed
