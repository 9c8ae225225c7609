"""The per-connection queue: bounded in order, latest-only for ticker/candles, and book
diffs merged so that applying the merged diff equals applying every diff."""

from __future__ import annotations

import json

from exchange.common.v1 import types_pb2
from exchange.websocket.v1 import websocket_pb2
from hypothesis import given
from hypothesis import strategies as st

from gateway.fanout import OutboundQueue, merge_book_updates, to_json


def _book(previous_seq: int, seq: int, bids: dict[int, int]) -> websocket_pb2.ServerMessage:
    message = websocket_pb2.ServerMessage(channel="book:BTC-USDT")
    message.book_update.symbol = "BTC-USDT"
    message.book_update.previous_seq = previous_seq
    message.book_update.seq = seq
    message.book_update.bids.extend(
        types_pb2.PriceLevel(price=price, quantity=quantity) for price, quantity in bids.items()
    )
    return message


def test_in_order_messages_are_bounded() -> None:
    queue = OutboundQueue(messages_max=3)
    assert all(queue.push(text) for text in ("a", "b", "c"))
    assert not queue.push("d")
    assert [queue.pop(), queue.pop(), queue.pop(), queue.pop()] == ["a", "b", "c", None]


def test_latest_only_channels_keep_one_pending_entry_in_place() -> None:
    queue = OutboundQueue(messages_max=10)
    queue.push("trade-1")
    for number in range(100):
        queue.push_latest("ticker:BTC-USDT", f"ticker-{number}")
    queue.push("trade-2")
    assert len(queue) == 3
    assert [queue.pop(), queue.pop(), queue.pop()] == ["trade-1", "ticker-99", "trade-2"]
    assert queue.conflated == 99
    queue.push_latest("ticker:BTC-USDT", "ticker-100")  # sent already: a new entry
    assert queue.pop() == "ticker-100"


def test_book_diffs_merge_into_one_contiguous_diff() -> None:
    queue = OutboundQueue(messages_max=10)
    first = _book(10, 11, {100: 5, 99: 1})
    second = _book(11, 12, {100: 0, 98: 7})
    queue.push_book("book:BTC-USDT", first, to_json(first))
    queue.push_book("book:BTC-USDT", second, to_json(second))
    merged = json.loads(queue.pop() or "")
    update = merged["bookUpdate"]
    assert (update["previousSeq"], update["seq"]) == ("10", "12")
    levels = {int(level["price"]): int(level.get("quantity", 0)) for level in update["bids"]}
    assert levels == {100: 0, 99: 1, 98: 7}


@given(st.lists(st.dictionaries(st.integers(1, 20), st.integers(0, 5), max_size=5), min_size=1))
def test_applying_the_merged_diff_equals_applying_each(diffs: list[dict[int, int]]) -> None:
    messages = [_book(seq, seq + 1, bids) for seq, bids in enumerate(diffs)]
    merged = messages[0]
    for message in messages[1:]:
        merged = merge_book_updates(merged, message)

    def apply(book: dict[int, int], message: websocket_pb2.ServerMessage) -> dict[int, int]:
        result = dict(book)
        for level in message.book_update.bids:
            if level.quantity == 0:
                result.pop(level.price, None)
            else:
                result[level.price] = level.quantity
        return result

    one_by_one: dict[int, int] = {}
    for message in messages:
        one_by_one = apply(one_by_one, message)
    assert apply({}, merged) == one_by_one
    assert merged.book_update.previous_seq == 0
    assert merged.book_update.seq == len(diffs)
