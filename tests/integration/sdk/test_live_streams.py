"""The WebSocket client on the gateway's real channels (fed by the core's event log through
Tansu): a BookFeed's local book equals GET orderbook at the same seq after crossing and
resting orders, a missed diff makes it resync by itself (from REST, or by subscribing
again), and the private channels bring an account its own orders, fills and balances -
typed, with Decimal amounts - and nothing to another account."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from functools import partial

import pytest
from exchange_sdk import Client, Liquidity, Side
from exchange_sdk.signing import ApiCredentials
from exchange_sdk.websocket import (
    BalanceEvent,
    BookFeed,
    FillEvent,
    MarketDataSocket,
    OrderEvent,
    SocketEvent,
    TradeEvent,
    rest_snapshot_source,
)

from tests.integration.edge.harness import ALICE, BOB, READER
from tests.integration.sdk.conftest import SdkEdge
from tests.integration.sdk.streams import BookState, book_state, read_events, rest_book_state

SYMBOL = "ETH-USDT"


async def _place(
    client: Client,
    side: str,
    quantity: str,
    price: str,
    *,
    time_in_force: str | None = None,
    client_order_id: str | None = None,
) -> None:
    await asyncio.to_thread(
        partial(
            client.place_order,
            SYMBOL,
            side,
            quantity,
            price=price,
            time_in_force=time_in_force,
            client_order_id=client_order_id,
        )
    )


async def _orders_that_cross_and_rest(alice: Client, bob: Client) -> None:
    await _place(bob, "sell", "0.5", "3001")
    await _place(bob, "sell", "0.25", "3002.5")
    await _place(alice, "buy", "0.1", "2999")
    await _place(alice, "buy", "0.6", "3001")  # takes 0.5 @ 3001, rests 0.1
    await _place(alice, "buy", "0.05", "3002.5", time_in_force="ioc")
    await asyncio.to_thread(bob.cancel_all_orders, SYMBOL)


def _bid_prices(state: BookState) -> list[Decimal]:
    bids = state[1]
    assert isinstance(bids, tuple)
    return [level.price for level in bids]


async def _in_step(
    feed: BookFeed,
    client: Client,
    socket: MarketDataSocket,
    settled: Callable[[BookState], bool],
) -> None:
    """Reads frames into `feed` until the REST book is `settled` and the local book equals
    it at the same seq."""
    for _ in range(100):
        rest = await rest_book_state(client, SYMBOL)
        if settled(rest) and feed.book.in_sync and book_state(feed.book) == rest:
            return
        await read_events(socket, client, feed=feed, seconds=0.2, timeout_ok=True)
    assert book_state(feed.book) == await rest_book_state(client, SYMBOL)


@pytest.mark.parametrize("snapshots", ["rest", "resubscribe"])
async def test_book_feed_equals_the_rest_book_and_resyncs_after_a_missed_diff(
    sdk_edge: SdkEdge, snapshots: str
) -> None:
    with sdk_edge.client(ALICE) as alice, sdk_edge.client(BOB) as bob:
        market = alice.get_market(SYMBOL)
        async with MarketDataSocket(sdk_edge.websocket_url) as socket:
            source = (
                rest_snapshot_source(socket.session, sdk_edge.base_url)
                if snapshots == "rest"
                else None
            )
            feed = BookFeed(socket, market, snapshot_source=source)
            await feed.start()
            await _orders_that_cross_and_rest(alice, bob)
            # Bob cancelled what was left of his asks; Alice's two bids rest.
            await _in_step(
                feed, alice, socket, lambda rest: rest[2] == () and len(_bid_prices(rest)) == 2
            )
            assert feed.resyncs == 0
            assert feed.book.bids()[0].price == Decimal("3001")
            assert feed.book.bids()[0].quantity == Decimal("0.1")

            # A diff the client never sees: the next one does not chain; the feed resyncs.
            await _place(alice, "buy", "0.01", "2998")
            update = await socket.messages().__anext__()
            while update.WhichOneof("message") != "book_update":
                update = await socket.messages().__anext__()
            await _place(alice, "buy", "0.02", "2997")
            await _in_step(feed, alice, socket, lambda rest: len(_bid_prices(rest)) == 4)
            assert feed.resyncs == 1
            assert feed.book.gaps == 1
            assert [level.price for level in feed.book.bids()][:4] == [
                Decimal(3001),
                Decimal(2999),
                Decimal(2998),
                Decimal(2997),
            ]
            await asyncio.to_thread(alice.cancel_all_orders, SYMBOL)
            await _in_step(feed, alice, socket, lambda rest: _bid_prices(rest) == [])
            assert feed.book.bids() == ()


async def test_private_channels_bring_each_account_its_own_updates_typed(
    sdk_edge: SdkEdge,
) -> None:
    with sdk_edge.client(ALICE) as alice, sdk_edge.client(BOB) as bob:
        url = sdk_edge.websocket_url
        async with (
            MarketDataSocket(url, credentials=ApiCredentials(ALICE[0], ALICE[1])) as mine,
            MarketDataSocket(url, credentials=ApiCredentials(READER[0], READER[1])) as other,
            MarketDataSocket(url) as public,
        ):
            for socket in (mine, other):
                await socket.authenticate()
                await socket.subscribe("orders", "fills", "balances")
            await public.subscribe(f"trades:{SYMBOL}")
            await _place(bob, "sell", "0.2", "3000", client_order_id="bob-private-1")
            await _place(alice, "buy", "0.2", "3000", client_order_id="alice-private-1")

            def complete(events: list[SocketEvent]) -> bool:
                kinds = {type(event) for event in events}
                assets = {e.balance.asset for e in events if isinstance(e, BalanceEvent)}
                return {OrderEvent, FillEvent}.issubset(kinds) and {"USDT", "ETH"} <= assets

            events = await read_events(mine, alice, until=complete)
            orders = [event for event in events if isinstance(event, OrderEvent)]
            assert [(o.change, o.client_order_id, o.side) for o in orders] == [
                ("accepted", "alice-private-1", Side.BUY)
            ]
            # The frame names its market, so the amounts come in whole units.
            assert (orders[0].symbol, orders[0].price, orders[0].quantity) == (
                SYMBOL,
                Decimal(3000),
                Decimal("0.2"),
            )
            fills = [event for event in events if isinstance(event, FillEvent)]
            assert len(fills) == 1
            fill = fills[0]
            assert (fill.client_order_id, fill.order_id) == ("alice-private-1", orders[0].order_id)
            assert (fill.side, fill.liquidity) == (Side.BUY, Liquidity.TAKER)
            assert (fill.price, fill.quantity, fill.quote_quantity) == (
                Decimal("3000"),
                Decimal("0.2"),
                Decimal("600"),
            )
            assert fill.fee == Decimal("1.2")  # taker 0.2 % in USDT
            assert fill.remaining_quantity == 0
            balances = {e.balance.asset: e.balance for e in events if isinstance(e, BalanceEvent)}
            live = {b.asset: b for b in (await asyncio.to_thread(alice.get_balances)).balances}
            assert balances["ETH"].available == live["ETH"].available
            assert balances["USDT"].available == live["USDT"].available

            trades = await read_events(
                public, alice, until=lambda seen: any(isinstance(e, TradeEvent) for e in seen)
            )
            assert [e.trade.price for e in trades if isinstance(e, TradeEvent)] == [Decimal(3000)]
            # The reader's connection heard nothing of Alice's or Bob's orders.
            assert await read_events(other, alice, seconds=1.0, timeout_ok=True) == []
