"""MarketDataSocket survives a gateway restart: the connection drops, the socket reconnects
through Envoy by itself (backoff), authenticates and subscribes again, the BookFeed starts
again from the new connection's snapshot, and trades, fills and book diffs flow on."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from exchange_sdk.signing import ApiCredentials
from exchange_sdk.websocket import (
    BookFeed,
    FillEvent,
    MarketDataSocket,
    ReconnectPolicy,
    SocketEvent,
    TradeEvent,
)

from tests.integration.edge.harness import ALICE, BOB
from tests.integration.sdk.conftest import SdkEdge
from tests.integration.sdk.streams import book_state, read_events, rest_book_state

SYMBOL = "BTC-USDT"


async def test_the_socket_reconnects_after_a_gateway_restart(sdk_edge: SdkEdge) -> None:
    with sdk_edge.client(ALICE) as alice, sdk_edge.client(BOB) as bob:
        market = alice.get_market(SYMBOL)
        policy = ReconnectPolicy(backoff_initial_seconds=0.1, backoff_max_seconds=0.5)
        async with MarketDataSocket(
            sdk_edge.websocket_url,
            credentials=ApiCredentials(ALICE[0], ALICE[1]),
            reconnect=policy,
        ) as socket:
            feed = BookFeed(socket, market)
            await feed.start()
            await socket.authenticate()
            await socket.subscribe(f"trades:{SYMBOL}", "fills")
            await read_events(socket, alice, feed=feed, until=lambda _events: feed.book.in_sync)
            await asyncio.to_thread(sdk_edge.edge.gateway.stop)
            await asyncio.to_thread(sdk_edge.edge.gateway.start)
            # Frames sent while disconnected are lost; once the socket is back (its book
            # starts again from the new connection's snapshot) the stream goes on.
            await read_events(
                socket,
                alice,
                feed=feed,
                until=lambda _events: socket.reconnects >= 1 and feed.book.in_sync,
                seconds=20,
            )
            await asyncio.to_thread(bob.place_order, SYMBOL, "sell", "0.01", price="50100")
            await asyncio.to_thread(
                alice.place_order, SYMBOL, "buy", "0.01", price="50100", time_in_force="ioc"
            )

            def traded(events: list[SocketEvent]) -> bool:
                kinds = {type(event) for event in events}
                return {TradeEvent, FillEvent} <= kinds

            events = await read_events(socket, alice, feed=feed, until=traded)
            assert socket.reconnects >= 1
            assert feed.resyncs >= 1
            assert socket.account_id == ALICE[2]
            assert socket.channels == {f"book:{SYMBOL}", f"trades:{SYMBOL}", "fills"}
            fills = [event for event in events if isinstance(event, FillEvent)]
            assert fills[-1].price == Decimal("50100")

            await asyncio.to_thread(bob.place_order, SYMBOL, "sell", "0.02", price="50200")
            for _ in range(100):
                rest = await rest_book_state(alice, SYMBOL)
                if feed.book.in_sync and book_state(feed.book) == rest and rest[2]:
                    break
                await read_events(socket, alice, feed=feed, seconds=0.2, timeout_ok=True)
            assert book_state(feed.book) == await rest_book_state(alice, SYMBOL)
            assert feed.book.best_ask() is not None
            await asyncio.to_thread(bob.cancel_all_orders)
