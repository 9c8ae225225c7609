"""The service's read model of orders and fills, fed from the engine's results in seq order.

The engine keeps open orders and, per account, the final status of recently closed ones; it
keeps no fills and no closed order's details. GetOrder / ListOrders / ListFills and every
response that shows an order read this model instead:

- `record(commands, results)` gets every applied batch's results in seq order — from the
  sequencer's event sink (core/service/history_sink.py), live AND during recovery replay —
  and updates the records from the events (accepted, traded, amended, cancelled, expired).
  Idempotent duplicates carry no events and change nothing. The model is a deterministic
  function of the WAL prefix it was fed.
- Bounded per account (FIFO by order id): `orders_max_per_account` records and
  `fills_max_per_account` fills. An evicted open order is still answered from the engine.
- Survives restarts within those bounds: `take_changes()` copies, in one event-loop step (at
  a snapshot's seq), only what changed since the previous call — the rows of the order
  records added or changed (each record's fields into a tuple) and the fills appended — and
  `HistoryCheckpointState.apply` brings a copy of the model at the previous snapshot up to
  this one, off the event loop (history_sink.py writes and reads the checkpoint files).
  `capture()` copies the whole model (at start, as the writer's first state, then
  `drop_changes()`). `restore()` loads a capture at start, and the WAL replay after the
  snapshot feeds the rest. Only a snapshot
  without a checkpoint (written before checkpoints existed) falls back to `seed_from_engine`
  (open orders only, fill totals and timestamps unknown). See docs/adr/0008.
- Change tracking: every mutation of a record goes through `_add`, `_traded`, `_closed`,
  `_amended` or `record`'s status update, and each puts the record in `_changed_orders`
  (a dict store; an evicted record leaves it, so it stays within the window); each appended
  fill counts in `_fill_counts` (per account). Both are bounded by the live windows, not by
  the commands since the previous snapshot (docs/adr/0019).
  FillRecords are never changed once made.

Invariant: a record's `remaining_quantity` and `status` equal the engine's for every open order
the model holds (checked by the integration tests against `Engine.order`).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import attrgetter
from typing import Any, Final

from core.contracts.orders import FillRecord, OrderRecord
from core.engine import (
    ApplyResult,
    Command,
    Engine,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderStatus,
    Side,
    TradeExecuted,
)

ORDERS_MAX_PER_ACCOUNT_DEFAULT: Final = 10_000
FILLS_MAX_PER_ACCOUNT_DEFAULT: Final = 10_000

_FILLED: Final = OrderStatus.FILLED
_PARTIALLY_FILLED: Final = OrderStatus.PARTIALLY_FILLED
_CANCELLED: Final = OrderStatus.CANCELLED
_EXPIRED: Final = OrderStatus.EXPIRED
_NEW: Final = OrderStatus.NEW
_OPEN_STATUSES: Final = frozenset((_NEW, _PARTIALLY_FILLED))
_OPPOSITE: Final = {Side.BUY: Side.SELL, Side.SELL: Side.BUY}
_ORDER_FIELDS: Final = OrderRecord.__slots__
_order_fields: Final = attrgetter(*_ORDER_FIELDS)
_ORDER_ID_INDEX: Final = _ORDER_FIELDS.index("order_id")
_CLIENT_ORDER_ID_INDEX: Final = _ORDER_FIELDS.index("client_order_id")


@dataclass(frozen=True, slots=True)
class HistoryCapture:
    """The whole model at one seq, as plain values (picklable; shares nothing mutable).

    `orders`: per account, each record's fields in `OrderRecord.__slots__` order, oldest
    first; `client_order_ids`: per account, client order id -> order id; `fills`: per
    account, oldest first (FillRecords never change once made, so they are shared).
    """

    orders: dict[str, list[tuple[Any, ...]]]
    client_order_ids: dict[str, dict[str, int]]
    fills: dict[str, list[FillRecord]]


@dataclass(frozen=True, slots=True)
class HistoryChanges:
    """What changed in the model since the previous `take_changes()` (or `capture()`).

    `order_rows`: per account, the rows (as in `HistoryCapture.orders`) of the records added
    or changed that the model still holds, in the order each was first changed (new orders
    in order id order); `fills`: per account, the fills appended (at most the bound),
    oldest first. Evictions are not listed: the model evicts FIFO by order id, so the
    receiver applies the same bounds (`HistoryCheckpointState.apply`).
    """

    order_rows: dict[str, list[tuple[Any, ...]]]
    fills: dict[str, list[FillRecord]]


class HistoryCheckpointState:
    """A copy of the model at one seq, as immutable rows and shared FillRecords, brought
    forward from snapshot to snapshot by `HistoryChanges` (off the event loop: the history
    sink's writer owns it, one thread at a time).

    `apply(changes)` does what the model did: a changed row replaces the record's row in
    place, a new one goes last, then the oldest beyond `orders_max_per_account` are dropped
    (the model evicts FIFO by order id too); fills are appended to a deque of the same bound.
    Client order ids are not tracked: the model maps each to the newest held order that has
    it (it sets the mapping on add and drops it when that order is evicted), so `capture()`
    derives them from the rows. Invariant (unit and property tested): after applying every
    change taken up to seq S, `capture()` equals `OrderHistory.capture()` at S.
    """

    def __init__(
        self, capture: HistoryCapture, *, orders_max_per_account: int, fills_max_per_account: int
    ) -> None:
        self._orders_max = orders_max_per_account
        self._fills_max = fills_max_per_account
        self._orders: dict[str, OrderedDict[int, tuple[Any, ...]]] = {
            account_id: OrderedDict((row[_ORDER_ID_INDEX], row) for row in rows)
            for account_id, rows in capture.orders.items()
        }
        self._fills: dict[str, deque[FillRecord]] = {
            account_id: deque(fills, maxlen=fills_max_per_account)
            for account_id, fills in capture.fills.items()
        }

    def apply(self, changes: HistoryChanges) -> None:
        for account_id, rows in changes.order_rows.items():
            orders = self._orders.get(account_id)
            if orders is None:
                orders = self._orders[account_id] = OrderedDict()
            for row in rows:
                orders[row[_ORDER_ID_INDEX]] = row
            while len(orders) > self._orders_max:
                orders.popitem(last=False)
        for account_id, fills in changes.fills.items():
            held = self._fills.get(account_id)
            if held is None:
                held = self._fills[account_id] = deque(maxlen=self._fills_max)
            held.extend(fills)

    def capture(self) -> HistoryCapture:
        """The model at this state's seq (fresh lists; rows and fills shared)."""
        client_order_ids: dict[str, dict[str, int]] = {}
        for account_id, orders in self._orders.items():
            client_ids = client_order_ids[account_id] = {}
            for row in orders.values():
                if row[_CLIENT_ORDER_ID_INDEX]:
                    client_ids[row[_CLIENT_ORDER_ID_INDEX]] = row[_ORDER_ID_INDEX]
        return HistoryCapture(
            orders={
                account_id: list(orders.values()) for account_id, orders in self._orders.items()
            },
            client_order_ids=client_order_ids,
            fills={account_id: list(fills) for account_id, fills in self._fills.items()},
        )


class OrderHistory:
    """Recent orders and fills per account. Not thread-safe: the event loop owns it."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        *,
        orders_max_per_account: int = ORDERS_MAX_PER_ACCOUNT_DEFAULT,
        fills_max_per_account: int = FILLS_MAX_PER_ACCOUNT_DEFAULT,
    ) -> None:
        if orders_max_per_account < 1 or fills_max_per_account < 1:
            raise ValueError("history bounds must be positive")
        self._engine = engine
        self._orders_max = orders_max_per_account
        self._fills_max = fills_max_per_account
        self._orders: dict[str, OrderedDict[int, OrderRecord]] = {}
        self._by_id: dict[int, OrderRecord] = {}
        self._client_ids: dict[str, dict[str, int]] = {}
        self._fills: dict[str, deque[FillRecord]] = {}
        self._quote_assets: dict[str, str] = {}
        # Changed since the last take_changes()/capture(): records by order id, in order of
        # first change (only those the model still holds); fills appended per account.
        self._changed_orders: dict[int, OrderRecord] = {}
        self._fill_counts: dict[str, int] = {}
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            OrderAccepted: self._accepted,
            TradeExecuted: self._traded,
            OrderCancelled: self._cancelled,
            OrderExpired: self._expired,
            OrderAmended: self._amended,
        }

    # ------------------------------------------------------------------ feeding

    def seed_from_engine(self) -> int:
        """Add every order resting in the engine's books; returns how many."""
        engine = self._engine()
        views = [
            view
            for symbol in engine.symbols()
            for side in (Side.BUY, Side.SELL)
            for view in engine.book_orders(symbol, side)
        ]
        views.sort(key=lambda view: view.order_id)
        for view in views:
            self._add(OrderRecord.from_view(view, engine_seq=view.order_id))
        return len(views)

    @property
    def orders_max_per_account(self) -> int:
        return self._orders_max

    @property
    def fills_max_per_account(self) -> int:
        return self._fills_max

    def capture(self) -> HistoryCapture:
        """A copy of the model as it is now (O(records)). The changes tracked are kept:
        `drop_changes()` when the capture replaces them."""
        return HistoryCapture(
            orders={
                account_id: [_order_fields(record) for record in orders.values()]
                for account_id, orders in self._orders.items()
            },
            client_order_ids={
                account_id: dict(client_ids) for account_id, client_ids in self._client_ids.items()
            },
            fills={account_id: list(fills) for account_id, fills in self._fills.items()},
        )

    def drop_changes(self) -> None:
        """Start tracking changes from here (after a `capture()` that holds them)."""
        self._changed_orders = {}
        self._fill_counts = {}

    def take_changes(self) -> HistoryChanges:
        """What changed since the previous call or `capture()`, copied (O(changes)); the
        tracking starts again from here."""
        by_id = self._by_id
        order_rows: dict[str, list[tuple[Any, ...]]] = {}
        for order_id, record in self._changed_orders.items():
            if by_id.get(order_id) is record:  # else evicted since: the bounds drop it
                rows = order_rows.get(record.account_id)
                if rows is None:
                    rows = order_rows[record.account_id] = []
                rows.append(_order_fields(record))
        self._changed_orders = {}
        fills: dict[str, list[FillRecord]] = {}
        for account_id, count in self._fill_counts.items():
            newest = list(islice(reversed(self._fills[account_id]), min(count, self._fills_max)))
            newest.reverse()
            fills[account_id] = newest
        self._fill_counts = {}
        return HistoryChanges(order_rows, fills)

    def restore(self, capture: HistoryCapture) -> None:
        """Replace the model with `capture` (at start, before the WAL replay); the bounds of
        this model apply (the oldest beyond them are dropped)."""
        self._orders.clear()
        self._by_id.clear()
        self._client_ids.clear()
        self._fills.clear()
        new_record = OrderRecord.__new__
        for account_id, rows in capture.orders.items():
            orders: OrderedDict[int, OrderRecord] = OrderedDict()
            for row in rows[-self._orders_max :]:
                record = new_record(OrderRecord)
                for name, value in zip(_ORDER_FIELDS, row, strict=True):
                    setattr(record, name, value)
                orders[record.order_id] = record
                self._by_id[record.order_id] = record
            self._orders[account_id] = orders
            self._client_ids[account_id] = {
                client_order_id: order_id
                for client_order_id, order_id in capture.client_order_ids.get(
                    account_id, {}
                ).items()
                if order_id in orders
            }
        for account_id, fills in capture.fills.items():
            self._fills[account_id] = deque(fills, maxlen=self._fills_max)
        self.drop_changes()

    def record(
        self,
        commands: Sequence[Command],  # noqa: ARG002  (the listener signature)
        results: Sequence[ApplyResult],
    ) -> None:
        """Apply one batch's results (a CommandIntake listener; called in WAL order)."""
        handlers = self._handlers
        by_id = self._by_id
        changed = self._changed_orders
        for result in results:
            if result.duplicate:
                continue
            for event in result.events:
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(event)
            outcome = result.outcome
            status = outcome.status
            if status is not None and outcome.order_id:
                record = by_id.get(outcome.order_id)
                if record is not None and record.status is not status:
                    record.status = status
                    changed[outcome.order_id] = record

    def _add(self, record: OrderRecord) -> None:
        account_id = record.account_id
        orders = self._orders.get(account_id)
        if orders is None:
            orders = self._orders[account_id] = OrderedDict()
            self._client_ids[account_id] = {}
        client_ids = self._client_ids[account_id]
        orders[record.order_id] = record
        self._by_id[record.order_id] = record
        self._changed_orders[record.order_id] = record
        if record.client_order_id:
            client_ids[record.client_order_id] = record.order_id
        if len(orders) > self._orders_max:
            _, evicted = orders.popitem(last=False)
            del self._by_id[evicted.order_id]
            # take_changes would skip it anyway; dropping it here keeps the change tracking
            # within the window (else it held every order since the last snapshot).
            self._changed_orders.pop(evicted.order_id, None)
            if client_ids.get(evicted.client_order_id) == evicted.order_id:
                del client_ids[evicted.client_order_id]

    def _accepted(self, event: OrderAccepted) -> None:
        self._add(
            OrderRecord(  # positional: the order of OrderRecord.__init__
                event.order_id,
                event.account_id,
                event.client_order_id,
                event.symbol,
                event.side,
                event.order_type,
                event.time_in_force,
                event.post_only,
                event.self_trade_prevention,
                event.price,
                event.quantity,
                event.quote_quantity,
                _NEW,
                event.quantity,
                event.timestamp_ns,
                event.engine_seq,
            )
        )

    def quote_asset(self, symbol: str) -> str:
        asset = self._quote_assets.get(symbol)
        if asset is None:
            market = self._engine().market(symbol)
            asset = "" if market is None else market.spec.quote_asset
            self._quote_assets[symbol] = asset
        return asset

    def _fill(self, event: TradeExecuted, *, is_maker: bool, client_order_id: str) -> FillRecord:
        """The fill of one side of a trade, seen from that side's account."""
        return FillRecord(
            event.trade_id,
            event.maker_order_id if is_maker else event.taker_order_id,
            client_order_id,
            event.symbol,
            _OPPOSITE[event.taker_side] if is_maker else event.taker_side,
            is_maker,
            event.price,
            event.quantity,
            event.quote_amount,
            event.maker_fee if is_maker else event.taker_fee,
            self.quote_asset(event.symbol),
            event.timestamp_ns,
            event.engine_seq,
        )

    def _traded(self, event: TradeExecuted) -> None:
        by_id = self._by_id
        for order_id, account_id, remaining, is_maker in (
            (event.maker_order_id, event.maker_account_id, event.maker_quantity_remaining, True),
            (event.taker_order_id, event.taker_account_id, event.taker_quantity_remaining, False),
        ):
            record = by_id.get(order_id)
            client_order_id = ""
            if record is not None:
                client_order_id = record.client_order_id
                record.filled_quantity += event.quantity
                record.filled_quote_quantity += event.quote_amount
                record.fees_paid += event.maker_fee if is_maker else event.taker_fee
                record.remaining_quantity = remaining
                record.status = _FILLED if remaining == 0 else _PARTIALLY_FILLED
                record.updated_ns = event.timestamp_ns
                record.engine_seq = event.engine_seq
                self._changed_orders[order_id] = record
            fills = self._fills.get(account_id)
            if fills is None:
                fills = self._fills[account_id] = deque(maxlen=self._fills_max)
            fills.append(self._fill(event, is_maker=is_maker, client_order_id=client_order_id))
            counts = self._fill_counts
            counts[account_id] = counts.get(account_id, 0) + 1

    def _closed(
        self, event: OrderCancelled | OrderExpired, status: OrderStatus
    ) -> OrderRecord | None:
        record = self._by_id.get(event.order_id)
        if record is not None:
            record.status = status
            record.cancel_reason = event.reason
            record.remaining_quantity = 0
            record.updated_ns = event.timestamp_ns
            record.engine_seq = event.engine_seq
            self._changed_orders[event.order_id] = record
        return record

    def _cancelled(self, event: OrderCancelled) -> None:
        self._closed(event, _CANCELLED)

    def _expired(self, event: OrderExpired) -> None:
        self._closed(event, _EXPIRED)

    def _amended(self, event: OrderAmended) -> None:
        record = self._by_id.get(event.order_id)
        if record is not None:
            record.price = event.price
            record.quantity = event.quantity
            record.remaining_quantity = event.quantity_remaining
            record.updated_ns = event.timestamp_ns
            record.engine_seq = event.engine_seq
            self._changed_orders[event.order_id] = record

    # ------------------------------------------------------------------ queries

    @property
    def records_by_order_id(self) -> Mapping[int, OrderRecord]:
        """Every record held, by order id, of any account (callers check the account)."""
        return self._by_id

    def order(self, account_id: str, order_id: int) -> OrderRecord | None:
        """One of the account's orders (never another account's)."""
        record = self._by_id.get(order_id)
        if record is not None and record.account_id == account_id:
            return record
        view = self._engine().order(order_id)
        if view is not None and view.account_id == account_id:
            return OrderRecord.from_view(view, engine_seq=order_id)
        return None

    def order_id_of(self, account_id: str, client_order_id: str) -> int:
        """The order id of a client order id the model remembers, or 0."""
        return self._client_ids.get(account_id, {}).get(client_order_id, 0)

    def orders(
        self, account_id: str, *, symbol: str, open_only: bool, below_order_id: int
    ) -> Iterator[OrderRecord]:
        """The account's orders, newest first, with order_id < below_order_id (0: all)."""
        orders = self._orders.get(account_id)
        if orders is None:
            return
        for order_id in reversed(orders):
            if below_order_id and order_id >= below_order_id:
                continue
            record = orders[order_id]
            if symbol and record.symbol != symbol:
                continue
            if open_only and record.status not in _OPEN_STATUSES:
                continue
            yield record

    def fills(
        self, account_id: str, *, symbol: str, order_id: int, below_trade_id: int
    ) -> Iterator[FillRecord]:
        """The account's fills, newest first, with trade_id < below_trade_id (0: all)."""
        for fill in reversed(self._fills.get(account_id, ())):
            if below_trade_id and fill.trade_id >= below_trade_id:
                continue
            if symbol and fill.symbol != symbol:
                continue
            if order_id and fill.order_id != order_id:
                continue
            yield fill

    def fills_of(self, account_id: str, result: ApplyResult) -> list[FillRecord]:
        """The account's fills a command produced (an idempotent duplicate: the remembered
        fills the original command produced for its order)."""
        if result.duplicate:
            order_id = result.outcome.order_id
            if not order_id:
                return []
            engine_seq = result.outcome.engine_seq
            found = [
                fill
                for fill in self.fills(account_id, symbol="", order_id=order_id, below_trade_id=0)
                if fill.engine_seq == engine_seq
            ]
            found.reverse()
            return found
        fills: list[FillRecord] = []
        for event in result.events:
            if type(event) is TradeExecuted:
                is_maker = event.maker_account_id == account_id
                order_id = event.maker_order_id if is_maker else event.taker_order_id
                client_order_id = self._client_order_id(order_id)
                fills.append(self._fill(event, is_maker=is_maker, client_order_id=client_order_id))
        return fills

    def _client_order_id(self, order_id: int) -> str:
        record = self._by_id.get(order_id)
        return "" if record is None else record.client_order_id
