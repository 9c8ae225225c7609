"""The book's primitives (book.py), which matching, the engine and the snapshot go through.

Each test leaves the book valid (`check_invariants`, invariants 1-3 of core/engine/README.md)
after what it does, including the level that an operation empties: it is gone at once.
"""

from __future__ import annotations

import pytest

from core.engine.balances import Balance
from core.engine.book import LEVEL_COMPACT_DEAD_MIN, Order, OrderBook
from core.engine.enums import OrderType, SelfTradePrevention, Side, TimeInForce
from core.engine.errors import EngineInvariantError

_order_ids = iter(range(1, 1_000_000))


def _order(side: Side, price: int, quantity: int) -> Order:
    cell = Balance("a", "X")
    return Order(
        next(_order_ids),
        "a",
        "S",
        "",
        side,
        OrderType.LIMIT,
        TimeInForce.GTC,
        False,
        SelfTradePrevention.CANCEL_NEWEST,
        price,
        quantity,
        0,
        cell,
        cell,
    )


def _book(*orders: Order) -> OrderBook:
    book = OrderBook("S")
    for order in orders:
        book.rest(order)
    book.check_invariants()
    return book


def test_best_key_reaches_and_best_level_follow_the_keys() -> None:
    book = _book(_order(Side.SELL, 101, 1), _order(Side.SELL, 103, 1), _order(Side.BUY, 99, 1))
    assert book.asks.best_key() == -101
    assert book.bids.best_key() == 99
    assert book.asks.reaches(-101)  # a buy at 101 takes
    assert not book.asks.reaches(-100)  # a buy at 100 does not
    assert book.bids.reaches(99)
    assert not book.bids.reaches(100)
    level = book.asks.best_level(-102)
    assert level is not None
    assert level.price == 101
    assert book.asks.best_level(-100) is None
    assert OrderBook("T").asks.best_key() is None
    assert OrderBook("T").asks.best_level(-(10**9)) is None


def test_head_skips_dead_entries() -> None:
    first, second, third = (_order(Side.SELL, 101, 1) for _ in range(3))
    book = _book(first, second, third)
    book.asks.remove(first)
    book.asks.remove(second)
    level = book.asks.best_level(-101)
    assert level is not None
    assert level.head() is third
    assert level.dead == 0
    book.check_invariants()


def test_fill_head_partly_keeps_the_order_and_fully_drops_it_and_the_level() -> None:
    maker = _order(Side.SELL, 101, 5)
    book = _book(maker, _order(Side.SELL, 102, 1))
    level = book.asks.best_level(-101)
    assert level is not None
    assert book.asks.fill_head(level, maker, 2) == 3
    assert (maker.quantity_remaining, maker.filled_quantity, maker.resting) == (3, 2, True)
    assert level.quantity == 3
    book.check_invariants()
    assert book.asks.fill_head(level, maker, 3) == 0
    assert not maker.resting
    assert level.head() is None
    assert book.asks.best_key() == -102  # the emptied level is gone at once
    book.check_invariants()


def test_fill_head_of_another_order_than_the_head_raises() -> None:
    head, behind = _order(Side.BUY, 99, 1), _order(Side.BUY, 99, 1)
    book = _book(head, behind)
    level = book.bids.best_level(99)
    assert level is not None
    with pytest.raises(EngineInvariantError):
        book.bids.fill_head(level, behind, 1)


def test_pop_head_takes_the_head_out_and_drops_an_emptied_level() -> None:
    head, behind = _order(Side.BUY, 99, 2), _order(Side.BUY, 99, 3)
    book = _book(head, behind, _order(Side.BUY, 98, 1))
    level = book.bids.best_level(99)
    assert level is not None
    assert book.bids.pop_head(level) is head
    assert not head.resting
    assert (level.count, level.quantity) == (1, 3)
    book.check_invariants()
    assert level.head() is behind
    book.bids.pop_head(level)
    assert book.bids.best_key() == 98
    book.check_invariants()


def test_reduce_keeps_the_place_and_refuses_an_increase() -> None:
    first, second = _order(Side.SELL, 101, 5), _order(Side.SELL, 101, 5)
    book = _book(first, second)
    book.asks.reduce(first, 2)
    assert [order.order_id for order in book.asks.orders_in_priority()] == [
        first.order_id,
        second.order_id,
    ]
    assert book.asks.depth(1)[0].quantity == 7
    book.check_invariants()
    with pytest.raises(EngineInvariantError):
        book.asks.reduce(first, 3)
    with pytest.raises(EngineInvariantError):
        book.asks.reduce(first, 0)


def test_live_orders_up_to_stops_at_the_limit_and_skips_dead_entries() -> None:
    at_101, dead, at_102, at_103 = (
        _order(Side.SELL, 101, 1),
        _order(Side.SELL, 102, 1),
        _order(Side.SELL, 102, 1),
        _order(Side.SELL, 103, 1),
    )
    book = _book(at_101, dead, at_102, at_103)
    book.asks.remove(dead)
    assert list(book.asks.live_orders_up_to(-102)) == [at_101, at_102]
    assert list(book.asks.live_orders_up_to(-100)) == []


def test_live_order_values_are_the_live_orders_in_priority_order() -> None:
    orders = [_order(Side.BUY, 99 - index % 3, 1) for index in range(3 * LEVEL_COMPACT_DEAD_MIN)]
    book = _book(*orders)
    for order in orders[::4]:
        book.bids.remove(order)
    expected = [order.order_id for order in book.bids.orders_in_priority()]
    assert book.bids.live_order_values(lambda order: order.order_id) == expected
    assert len(expected) == len(orders) - len(orders[::4])


def test_rest_raises_when_the_book_would_cross() -> None:
    book = _book(_order(Side.SELL, 101, 1))
    with pytest.raises(EngineInvariantError):
        book.rest(_order(Side.BUY, 101, 1))
