"""The market-data projection on hand-written event streams from the real engine: a taker
that partly fills rests only its remainder, one diff per command chains seq to seq,
duplicates change nothing, fills go to each side's account, and the snapshot a book
subscription starts from is followed by diffs that continue from its seq."""

from __future__ import annotations

from exchange.events.v1.envelope_pb2 import EventEnvelope
from exchange.marketdata.v1 import marketdata_pb2
from exchange.websocket.v1 import websocket_pb2
from redis.asyncio import Redis

from common import page_tokens
from core.contracts.events import envelopes_for
from core.engine import CancelOrder, CreateAsset, CreateMarket, Deposit, Side
from core.engine.commands import Command
from core.engine.testing import BTC, USDT, EngineDriver, btc_usdt_spec, limit_order
from core.service.projection_snapshot import projection_snapshot
from gateway.fanout import OutboundQueue
from gateway.market_data.projection import (
    MarketDataProjection,
    PrivateUpdate,
    PublicUpdate,
    Update,
)
from gateway.market_data.service import MarketDataService
from streaming.service import TRADE_PAGE_DEFAULT, trades_page

SPEC = btc_usdt_spec()
PRICE = 50_000 * USDT


class Run:
    """The real engine, every command's envelopes fed to a projection as one fetch."""

    def __init__(self) -> None:
        self.driver = EngineDriver()
        self.projection = MarketDataProjection(trades_per_symbol_max=2)
        self.envelopes: list[EventEnvelope] = []
        for command in (
            CreateAsset(asset="BTC", scale=8),
            CreateAsset(asset="USDT", scale=6),
            CreateMarket(spec=SPEC),
        ):
            self.command_updates(command)
        for account in ("alice", "bob"):
            for asset, amount in (("USDT", 1_000_000 * USDT), ("BTC", 10 * BTC)):
                self.command_updates(
                    Deposit(
                        account_id=account,
                        asset=asset,
                        amount=amount,
                        transfer_id=f"{account}-{asset}",
                    )
                )

    def command_updates(self, command: Command) -> list[Update]:
        result = self.driver.apply(command)
        envelopes = envelopes_for(
            result.events, shard_id="s", epoch=1, command=command, market_spec=lambda _s: SPEC
        )
        self.envelopes.extend(envelopes)
        return self.projection.apply_all(envelopes)


def _book_diffs(updates: list[Update]) -> list[websocket_pb2.BookUpdate]:
    return [
        update.message.book_update
        for update in updates
        if isinstance(update, PublicUpdate) and update.channel.startswith("book:")
    ]


def test_a_partly_filled_taker_rests_its_remainder_and_each_command_is_one_diff() -> None:
    run = Run()
    book = run.projection.book("BTC-USDT")
    assert book is not None
    seq_before = book.seq
    sell = run.command_updates(
        limit_order("bob", Side.SELL, BTC // 100, PRICE, client_order_id="b1")
    )
    (diff,) = _book_diffs(sell)
    assert (diff.previous_seq, diff.seq) == (seq_before, book.seq)
    assert [(level.price, level.quantity, level.order_count) for level in diff.asks] == [
        (PRICE, BTC // 100, 1)
    ]
    buy = run.command_updates(
        limit_order("alice", Side.BUY, 3 * BTC // 100, PRICE, client_order_id="a1")
    )
    (diff,) = _book_diffs(buy)
    assert [(level.price, level.quantity) for level in diff.asks] == [(PRICE, 0)]  # removed
    assert [(level.price, level.quantity, level.order_count) for level in diff.bids] == [
        (PRICE, 2 * BTC // 100, 1)
    ]
    engine_depth = run.driver.engine.book_depth("BTC-USDT")
    assert engine_depth is not None
    assert book.seq == engine_depth.seq
    fills = {
        update.account_id: update.message.fill
        for update in buy
        if isinstance(update, PrivateUpdate) and update.kind == "fills"
    }
    assert fills["alice"].side == 1  # SIDE_BUY, taker
    assert fills["alice"].client_order_id == "a1"
    assert fills["bob"].client_order_id == "b1"  # the maker's, known from its acceptance
    assert fills["bob"].remaining_quantity == 0
    trades = [u for u in buy if isinstance(u, PublicUpdate) and u.channel == "trades:BTC-USDT"]
    assert len(trades) == 1
    assert trades[0].message.trade.trade.taker_side == 1

    cancel = run.command_updates(CancelOrder(account_id="alice", client_order_id="a1"))
    (diff,) = _book_diffs(cancel)
    assert [(level.price, level.quantity) for level in diff.bids] == [(PRICE, 0)]
    assert not book.bids
    assert run.projection.live_orders == 0


def test_redelivered_events_change_nothing_and_the_trade_ring_is_bounded() -> None:
    run = Run()
    for number in range(3):
        run.command_updates(
            limit_order("bob", Side.SELL, BTC // 100, PRICE, client_order_id=f"s{number}")
        )
        run.command_updates(
            limit_order("alice", Side.BUY, BTC // 100, PRICE, client_order_id=f"b{number}")
        )
    book = run.projection.book("BTC-USDT")
    assert book is not None
    assert [trade.trade_id for trade in book.trades] == ["2", "3"]
    assert book.trades_dropped_seq > 0
    seq = book.seq
    assert run.projection.apply_all(run.envelopes) == []
    assert book.seq == seq
    assert run.projection.duplicates_skipped == len(run.envelopes)


def test_a_snapshot_queued_for_a_subscription_goes_before_later_diffs() -> None:
    queue = OutboundQueue(messages_max=8)
    earlier = websocket_pb2.ServerMessage(channel="book:X")
    earlier.book_update.previous_seq, earlier.book_update.seq = 1, 2
    queue.push_book("book:X", earlier, "diff 1-2")
    assert queue.push_snapshot("book:X", "snapshot at 2")
    later = websocket_pb2.ServerMessage(channel="book:X")
    later.book_update.previous_seq, later.book_update.seq = 2, 3
    queue.push_book("book:X", later, "diff 2-3")
    assert [queue.pop(), queue.pop(), queue.pop(), queue.pop()] == [
        "diff 1-2",
        "snapshot at 2",
        "diff 2-3",
        None,
    ]


async def test_after_a_snapshot_list_trades_pages_on_to_the_history_service() -> None:
    """A projection restored from the core's snapshot holds only the trades after it: the
    last page of the ring links to the history (before the snapshot's seq + 1)."""
    run = Run()
    for number in range(2):
        run.command_updates(
            limit_order("bob", Side.SELL, BTC // 100, PRICE, client_order_id=f"s{number}")
        )
        run.command_updates(
            limit_order("alice", Side.BUY, BTC // 100, PRICE, client_order_id=f"b{number}")
        )
    engine = run.driver.engine
    snapshot = projection_snapshot(
        engine, engine_seq=engine.engine_seq_last, shard_id="s", position=None, clock_ns=lambda: 0
    )
    restored = MarketDataProjection()
    restored.restore(snapshot)
    snapshot_seq = restored.books["BTC-USDT"].seq
    run.projection = restored
    run.command_updates(limit_order("bob", Side.SELL, BTC // 100, PRICE, client_order_id="s9"))
    run.command_updates(limit_order("alice", Side.BUY, BTC // 100, PRICE, client_order_id="b9"))
    service = MarketDataService(restored, Redis())
    request = marketdata_pb2.ListTradesRequest(symbol="BTC-USDT", page_size=10)
    page = await service.ListTrades(request, None)  # type: ignore[arg-type]  # no error: no context
    assert [trade.seq > snapshot_seq for trade in page.trades] == [True]
    assert page.next_page_token == page_tokens.encode_number(snapshot_seq + 1)
    # That token is for the history service (the gateway forwards the request as it is):
    # streaming reads the same position from it.
    older = marketdata_pb2.ListTradesRequest(symbol="BTC-USDT", page_token=page.next_page_token)
    assert trades_page(older) == (snapshot_seq + 1, TRADE_PAGE_DEFAULT)
