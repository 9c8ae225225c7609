"""LocalOrderBook from crafted frames: snapshot + diffs, duplicates and stale diffs ignored,
a gap takes it out of sync until a snapshot, held diffs replayed after it; BookFeed
resyncs by itself (fetching a snapshot, or re-subscribing when the fetch fails)."""

from __future__ import annotations

from decimal import Decimal

from exchange.common.v1 import types_pb2
from exchange.marketdata.v1 import types_pb2 as marketdata_types_pb2
from exchange.websocket.v1 import websocket_pb2
from exchange_sdk.book import BookDiff, BookSnapshot, DiffOutcome, LevelUpdate, LocalOrderBook
from exchange_sdk.errors import ServerError
from exchange_sdk.websocket import BookFeed, MarketDataSocket, parse_server_message

from tests.unit.sdk.markets import BTC_USDT

USDT = 10**6
COIN = 10**8


def level(price: int, quantity: int) -> LevelUpdate:
    return LevelUpdate(price * USDT, quantity * COIN // 100, 1)


def snapshot(seq: int) -> BookSnapshot:
    return BookSnapshot(
        seq=seq, bids=(level(49_999, 2), level(49_998, 5)), asks=(level(50_001, 1),)
    )


def test_snapshot_then_chained_diffs() -> None:
    book = LocalOrderBook(BTC_USDT)
    assert book.needs_snapshot
    book.apply_snapshot(snapshot(10))
    assert book.in_sync
    assert book.seq == 10
    assert book.best_bid() is not None
    assert book.best_bid().price == Decimal("49999")  # type: ignore[union-attr]
    assert book.spread() == Decimal("2")

    diff = BookDiff(seq=11, previous_seq=10, bids=(level(49_999, 0), level(50_000, 3)))
    assert book.apply_diff(diff) is DiffOutcome.APPLIED
    assert [b.price for b in book.bids()] == [Decimal("50000"), Decimal("49998")]
    assert book.bids(1)[0].quantity == Decimal("0.03")
    assert book.seq == 11


def test_duplicates_and_stale_diffs_are_ignored() -> None:
    book = LocalOrderBook(BTC_USDT)
    book.apply_snapshot(snapshot(10))
    diff = BookDiff(seq=11, previous_seq=10, asks=(level(50_002, 4),))
    assert book.apply_diff(diff) is DiffOutcome.APPLIED
    assert book.apply_diff(diff) is DiffOutcome.STALE  # duplicate
    assert book.apply_diff(BookDiff(seq=9, previous_seq=8)) is DiffOutcome.STALE
    assert len(book.asks()) == 2
    assert book.in_sync


def test_a_gap_holds_diffs_until_a_snapshot_then_replays_the_newer_ones() -> None:
    book = LocalOrderBook(BTC_USDT)
    book.apply_snapshot(snapshot(10))
    assert book.apply_diff(BookDiff(seq=13, previous_seq=12, asks=(level(50_003, 1),))) is (
        DiffOutcome.GAP
    )
    assert book.needs_snapshot
    assert book.gaps == 1
    assert book.apply_diff(BookDiff(seq=14, previous_seq=13, asks=(level(50_004, 1),))) is (
        DiffOutcome.HELD
    )
    # The snapshot is at 13: diff 13 is inside it, diff 14 chains from it.
    book.apply_snapshot(BookSnapshot(seq=13, bids=(), asks=(level(50_001, 1), level(50_003, 1))))
    assert book.in_sync
    assert book.seq == 14
    assert [a.price for a in book.asks()] == [Decimal(p) for p in ("50001", "50003", "50004")]


def test_a_snapshot_older_than_the_held_diffs_stays_out_of_sync() -> None:
    book = LocalOrderBook(BTC_USDT)
    book.apply_diff(BookDiff(seq=20, previous_seq=19))
    book.apply_snapshot(snapshot(10))
    assert book.needs_snapshot


def test_pending_diffs_are_bounded() -> None:
    book = LocalOrderBook(BTC_USDT, pending_diffs_max=3)
    for seq in range(1, 10):
        book.apply_diff(BookDiff(seq=seq, previous_seq=seq - 1))
    book.apply_snapshot(BookSnapshot(seq=6, bids=(), asks=()))
    assert book.in_sync
    assert book.seq == 9


def _frame(text: str) -> websocket_pb2.ServerMessage:
    return parse_server_message(text)


class FakeSocket(MarketDataSocket):
    """Records re-subscriptions; no network."""

    def __init__(self) -> None:
        super().__init__("ws://unused")
        self.requests: list[tuple[str, tuple[str, ...]]] = []

    async def subscribe(self, *channels: str) -> tuple[str, ...]:
        self.requests.append(("subscribe", channels))
        return channels

    async def unsubscribe(self, *channels: str) -> tuple[str, ...]:
        self.requests.append(("unsubscribe", channels))
        return channels


SNAPSHOT_FRAME = (
    '{"channel": "book:BTC-USDT", "bookSnapshot": {"book": {"symbol": "BTC-USDT", "seq": "5",'
    ' "bids": [{"price": "49999000000", "quantity": "100000", "orderCount": 1}], "asks": []}}}'
)


def _update(seq: int, previous: int, price: int) -> websocket_pb2.ServerMessage:
    return websocket_pb2.ServerMessage(
        channel="book:BTC-USDT",
        book_update=websocket_pb2.BookUpdate(
            symbol="BTC-USDT",
            seq=seq,
            previous_seq=previous,
            asks=[types_pb2.PriceLevel(price=price * USDT, quantity=COIN, order_count=1)],
        ),
    )


async def test_book_feed_resyncs_from_a_fetched_snapshot_on_a_gap() -> None:
    fetched: list[str] = []

    async def fetch(symbol: str) -> BookSnapshot:
        fetched.append(symbol)
        return BookSnapshot.from_proto(
            marketdata_types_pb2.OrderBook(
                symbol=symbol,
                seq=8,
                asks=[types_pb2.PriceLevel(price=50_008 * USDT, quantity=COIN, order_count=1)],
            )
        )

    updates: list[int] = []
    feed = BookFeed(
        FakeSocket(), BTC_USDT, snapshot_source=fetch, on_update=lambda b: updates.append(b.seq)
    )
    await feed.handle(_frame(SNAPSHOT_FRAME))
    assert feed.book.seq == 5
    await feed.handle(_update(6, 5, 50_006))
    await feed.handle(_update(8, 7, 50_008))  # 7 is missing: gap, resync to 8
    assert fetched == ["BTC-USDT"]
    assert feed.book.in_sync
    assert feed.book.seq == 8
    assert feed.resyncs == 1
    await feed.handle(_update(9, 8, 50_009))
    assert [a.price for a in feed.book.asks()] == [Decimal("50008"), Decimal("50009")]
    await feed.handle(_update(3, 2, 1))  # stale
    await feed.handle(
        websocket_pb2.ServerMessage(
            channel="book:ETH-USDT", book_update=_update(99, 1, 1).book_update
        )
    )
    assert feed.book.seq == 9
    assert updates == [5, 6, 8, 9, 9]


async def test_book_feed_resubscribes_when_the_snapshot_fetch_fails() -> None:
    async def failing(symbol: str) -> BookSnapshot:
        raise ServerError("UNIMPLEMENTED", f"no order book for {symbol} yet")

    socket = FakeSocket()
    feed = BookFeed(socket, BTC_USDT, snapshot_source=failing)
    await feed.handle(_frame(SNAPSHOT_FRAME))
    await feed.handle(_update(7, 6, 50_007))
    assert feed.book.needs_snapshot
    assert socket.requests == [
        ("unsubscribe", ("book:BTC-USDT",)),
        ("subscribe", ("book:BTC-USDT",)),
    ]
    # The gateway answers the new subscription with a snapshot; the held diff is inside it.
    await feed.handle(_frame(SNAPSHOT_FRAME.replace('"seq": "5"', '"seq": "7"')))
    assert feed.book.in_sync
    assert feed.book.seq == 7
