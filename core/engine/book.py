"""Price-time priority order book of one market: the one module that knows its representation.

Invariants 1-3 of core/engine/README.md (the numbered list there is the source), as this
module keeps them (backed by `OrderBook.check_invariants` and the property tests against a
naive reference book):
1. Price-time priority: best price first across levels (bids highest first, asks lowest
   first), FIFO within a level. A quantity decrease keeps the place (`BookSide.reduce`); a
   price change or a quantity increase re-queues the order at the back (a new `Order`
   object, the old one becomes a dead entry).
2. Book structure: each side keeps `keys` sorted ascending with the best level LAST (bid key
   = price, ask key = -price) and exactly one PriceLevel per key in `levels`, so the best
   level is O(1) and removing it is `keys.pop()`. A level's `quantity` is the sum and `count`
   the number of its live orders; a level without live orders does not exist (it is dropped
   by the operation that takes its last live order, during matching too). A live order has
   resting=True, quantity_remaining > 0, is LIMIT GTC, and has its level's side and price.
   Removal is lazy (resting=False, skipped when met at the head); a level compacts when dead
   entries outnumber live ones, so memory stays O(live orders).
3. Not crossed at rest: between commands, best bid < best ask (`OrderBook.rest` raises if
   resting an order crosses the book).

Matching (matching.py) goes through the primitives on the best level: `BookSide.best_key`,
`BookSide.best_level`, `PriceLevel.head`, `BookSide.fill_head`, `BookSide.pop_head`; the
engine through `OrderBook.rest` / `remove` / `reduce` / `reaches`; the snapshot
through `BookSide.live_order_values`. Nothing else reads a side's keys or a level's queue.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterator
from typing import Final, TypeVar

from core.engine.balances import Balance
from core.engine.enums import (
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from core.engine.errors import EngineInvariantError
from core.engine.results import DepthLevel, OrderView

LEVEL_COMPACT_DEAD_MIN: Final = 32

_BUY: Final = Side.BUY

ValueT = TypeVar("ValueT")


class Order:
    """One order's mutable state. Plain slots object: the hot path creates one per order."""

    __slots__ = (
        "account_id",
        "client_order_id",
        "fee_ppm_units",
        "fees_paid",
        "filled_quantity",
        "order_id",
        "order_type",
        "post_only",
        "price",
        "proceeds_balance",
        "quantity",
        "quantity_remaining",
        "quote_quantity",
        "reserve_balance",
        "reserved_amount",
        "resting",
        "self_trade_prevention",
        "side",
        "status",
        "symbol",
        "time_in_force",
    )

    def __init__(  # noqa: PLR0917  (positional on purpose: built once per order, hot path)
        self,
        order_id: int,
        account_id: str,
        symbol: str,
        client_order_id: str,
        side: Side,
        order_type: OrderType,
        time_in_force: TimeInForce,
        post_only: bool,  # noqa: FBT001
        self_trade_prevention: SelfTradePrevention,
        price: int,
        quantity: int,
        quote_quantity: int,
        reserve_balance: Balance,
        proceeds_balance: Balance,
    ) -> None:
        self.order_id = order_id
        self.account_id = account_id
        self.symbol = symbol
        self.client_order_id = client_order_id
        self.side = side
        self.order_type = order_type
        self.time_in_force = time_in_force
        self.post_only = post_only
        self.self_trade_prevention = self_trade_prevention
        self.price = price
        self.quantity = quantity
        self.quote_quantity = quote_quantity
        # The balance cell the order's reservation is held in (quote for a buy, base for a
        # sell) and the cell its fills pay into.
        self.reserve_balance = reserve_balance
        self.proceeds_balance = proceeds_balance
        self.filled_quantity = 0
        self.quantity_remaining = quantity
        self.reserved_amount = 0
        # Cumulative sum of notional * fee_ppm over the order's fills; the fee paid so far is
        # ceil(fee_ppm_units / 1_000_000).
        self.fee_ppm_units = 0
        self.fees_paid = 0
        self.status = OrderStatus.NEW
        self.resting = False

    def requeued(self, *, price: int, quantity: int) -> Order:
        """A copy with a new price / total quantity, to go to the back of a level."""
        clone = Order(
            order_id=self.order_id,
            account_id=self.account_id,
            symbol=self.symbol,
            client_order_id=self.client_order_id,
            side=self.side,
            order_type=self.order_type,
            time_in_force=self.time_in_force,
            post_only=self.post_only,
            self_trade_prevention=self.self_trade_prevention,
            price=price,
            quantity=quantity,
            quote_quantity=self.quote_quantity,
            reserve_balance=self.reserve_balance,
            proceeds_balance=self.proceeds_balance,
        )
        clone.filled_quantity = self.filled_quantity
        clone.quantity_remaining = quantity - self.filled_quantity
        clone.reserved_amount = self.reserved_amount
        clone.fee_ppm_units = self.fee_ppm_units
        clone.fees_paid = self.fees_paid
        clone.status = self.status
        return clone

    def view(self) -> OrderView:
        return OrderView(
            order_id=self.order_id,
            account_id=self.account_id,
            symbol=self.symbol,
            client_order_id=self.client_order_id,
            side=self.side,
            order_type=self.order_type,
            time_in_force=self.time_in_force,
            post_only=self.post_only,
            self_trade_prevention=self.self_trade_prevention,
            price=self.price,
            quantity=self.quantity,
            filled_quantity=self.filled_quantity,
            quantity_remaining=self.quantity_remaining,
            reserved_amount=self.reserved_amount,
            status=self.status,
        )

    def __repr__(self) -> str:
        return (
            f"Order(id={self.order_id}, {self.account_id!r}, {self.side} "
            f"{self.quantity_remaining}/{self.quantity} @ {self.price}, {self.status})"
        )


class PriceLevel:
    """FIFO queue of orders at one price (with lazily deleted dead entries)."""

    __slots__ = ("count", "dead", "orders", "price", "quantity")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[Order] = deque()
        self.quantity = 0
        self.count = 0
        self.dead = 0

    def live_orders(self) -> Iterator[Order]:
        return (order for order in self.orders if order.resting)

    def head(self) -> Order | None:
        """The first live order (dead entries before it are dropped), None once the level has
        no live order left (it has then been dropped from its side: invariant 2)."""
        if self.count == 0:
            return None
        orders = self.orders
        order = orders[0]
        while not order.resting:
            orders.popleft()
            self.dead -= 1
            order = orders[0]
        return order


class BookSide:
    """One side of a book. `sign` is +1 for bids and -1 for asks; key = price * sign."""

    __slots__ = ("keys", "levels", "side", "sign")

    def __init__(self, side: Side) -> None:
        self.side = side
        self.sign = 1 if side is Side.BUY else -1
        self.keys: list[int] = []
        self.levels: dict[int, PriceLevel] = {}

    def remove(self, order: Order) -> None:
        """Take a live order out of the book (lazy: its entry is skipped later)."""
        level = self.levels.get(order.price)
        if level is None or not order.resting:
            msg = f"removing an order that is not in the book: {order!r}"
            raise EngineInvariantError(msg)
        order.resting = False
        level.quantity -= order.quantity_remaining
        level.count -= 1
        if level.count == 0:
            self.drop_level(level)
            return
        level.dead += 1
        if level.dead > LEVEL_COMPACT_DEAD_MIN and level.dead > level.count:
            level.orders = deque(level.live_orders())
            level.dead = 0

    def reduce(self, order: Order, quantity_remaining: int) -> None:
        """Lower a live order's remaining quantity in place: it keeps its time priority."""
        if not order.resting or not 0 < quantity_remaining <= order.quantity_remaining:
            msg = f"reducing {order!r} to {quantity_remaining} in place"
            raise EngineInvariantError(msg)
        self.levels[order.price].quantity -= order.quantity_remaining - quantity_remaining
        order.quantity_remaining = quantity_remaining

    def best_key(self) -> int | None:
        """The best level's key (bid: price, ask: -price), None for an empty side."""
        keys = self.keys
        return keys[-1] if keys else None

    def reaches(self, limit_key: int) -> bool:
        """Whether an incoming order with this limit key (buy: -price, sell: price) would
        take from this side: its best key is >= limit_key."""
        keys = self.keys
        return bool(keys) and keys[-1] >= limit_key

    def best_level(self, limit_key: int) -> PriceLevel | None:
        """The best level if its key is >= limit_key; None if beyond it, or the side is empty."""
        keys = self.keys
        if keys:
            key = keys[-1]
            if key >= limit_key:
                return self.levels[key * self.sign]
        return None

    def fill_head(self, level: PriceLevel, maker: Order, quantity: int) -> int:
        """Fill `quantity` of `maker`, the head of `level`, the best level; returns the maker's
        remaining quantity. A filled maker leaves the book, and so does an emptied level."""
        remaining = maker.quantity_remaining - quantity
        maker.quantity_remaining = remaining
        maker.filled_quantity += quantity
        level.quantity -= quantity
        if remaining == 0:
            if level.orders.popleft() is not maker:
                raise EngineInvariantError(f"filled {maker!r} was not the head of its level")
            maker.resting = False
            level.count -= 1
            if level.count == 0:
                self._drop_best_level(level)
        return remaining

    def pop_head(self, level: PriceLevel) -> Order:
        """Take the head live order out of `level`, the best level (self-trade prevention
        cancels it); an emptied level leaves the book. Call after `level.head()`."""
        order = level.orders.popleft()
        order.resting = False
        level.count -= 1
        level.quantity -= order.quantity_remaining
        if level.count == 0:
            self._drop_best_level(level)
        return order

    def _drop_best_level(self, level: PriceLevel) -> None:
        if self.keys.pop() * self.sign != level.price:
            raise EngineInvariantError(f"level {level.price} is not the best {self.side} level")
        del self.levels[level.price]

    def live_orders_up_to(self, limit_key: int) -> Iterator[Order]:
        """Live orders in priority order, from the levels whose key is >= limit_key."""
        levels = self.levels
        sign = self.sign
        for key in reversed(self.keys):
            if key < limit_key:
                return
            yield from levels[key * sign].live_orders()

    def live_order_values(self, values: Callable[[Order], ValueT]) -> list[ValueT]:
        """`values(order)` of every live order in priority order (the snapshot's capture)."""
        captured: list[ValueT] = []
        for level in self.levels_best_first():
            if level.dead:
                captured.extend(map(values, [order for order in level.orders if order.resting]))
            else:
                captured.extend(map(values, level.orders))
        return captured

    def drop_level(self, level: PriceLevel) -> None:
        key = level.price * self.sign
        keys = self.keys
        index = bisect_left(keys, key)
        if index == len(keys) or keys[index] != key:
            msg = f"level {level.price} missing from the {self.side} keys"
            raise EngineInvariantError(msg)
        del keys[index]
        del self.levels[level.price]

    def best_price(self) -> int | None:
        if not self.keys:
            return None
        return self.keys[-1] * self.sign

    def levels_best_first(self) -> Iterator[PriceLevel]:
        levels = self.levels
        sign = self.sign
        for key in reversed(self.keys):
            yield levels[key * sign]

    def orders_in_priority(self) -> Iterator[Order]:
        for level in self.levels_best_first():
            yield from level.live_orders()

    def depth(self, levels_max: int) -> tuple[DepthLevel, ...]:
        result: list[DepthLevel] = []
        for level in self.levels_best_first():
            if len(result) >= levels_max:
                break
            result.append(
                DepthLevel(price=level.price, quantity=level.quantity, order_count=level.count)
            )
        return tuple(result)

    def check_invariants(self) -> None:
        keys = self.keys
        if any(keys[i] >= keys[i + 1] for i in range(len(keys) - 1)):
            raise EngineInvariantError(f"{self.side} keys not strictly sorted")
        if sorted(price * self.sign for price in self.levels) != keys:
            raise EngineInvariantError(f"{self.side} keys and levels disagree")
        for level in self.levels.values():
            live = list(level.live_orders())
            if not live or len(live) != level.count:
                raise EngineInvariantError(f"level {level.price} count mismatch")
            if sum(order.quantity_remaining for order in live) != level.quantity:
                raise EngineInvariantError(f"level {level.price} quantity mismatch")
            if len(level.orders) - len(live) != level.dead:
                raise EngineInvariantError(f"level {level.price} dead-entry count mismatch")
            for order in live:
                valid = (
                    order.side is self.side
                    and order.price == level.price
                    and order.quantity_remaining > 0
                    and order.order_type is OrderType.LIMIT
                    and order.time_in_force is TimeInForce.GTC
                )
                if not valid:
                    raise EngineInvariantError(f"invalid resting order {order!r}")


class OrderBook:
    __slots__ = ("asks", "bids", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids = BookSide(Side.BUY)
        self.asks = BookSide(Side.SELL)

    def side(self, side: Side) -> BookSide:
        return self.bids if side is Side.BUY else self.asks

    def rest(self, order: Order) -> None:
        """Put an order at the back of its level, live; raise if that crosses the book
        (invariant 3). Every resting order comes through here (the opposite side's `reaches`
        is inlined: the hot path)."""
        price = order.price
        if order.side is _BUY:
            side = self.bids
            opposite_keys = self.asks.keys
            crossed = bool(opposite_keys) and opposite_keys[-1] >= -price
        else:
            side = self.asks
            opposite_keys = self.bids.keys
            crossed = bool(opposite_keys) and opposite_keys[-1] >= price
        level = side.levels.get(price)
        if level is None:
            level = side.levels[price] = PriceLevel(price)
            insort(side.keys, price * side.sign)
        level.orders.append(order)
        level.quantity += order.quantity_remaining
        level.count += 1
        order.resting = True
        if crossed:
            raise EngineInvariantError(f"book {self.symbol} crossed after resting {order!r}")

    def is_crossed(self) -> bool:
        best_bid = self.bids.best_price()
        best_ask = self.asks.best_price()
        return best_bid is not None and best_ask is not None and best_bid >= best_ask

    def check_invariants(self) -> None:
        self.bids.check_invariants()
        self.asks.check_invariants()
        if self.is_crossed():
            raise EngineInvariantError(f"book {self.symbol} is crossed at rest")  # invariant 3
