"""What the SDK's live-stream tests share: reading a socket's typed events until one
matches (or for a while), and the REST book in the shape of a LocalOrderBook."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from exchange_sdk import Client
from exchange_sdk.book import LocalOrderBook
from exchange_sdk.websocket import BookFeed, MarketDataSocket, SocketEvent, to_event

SECONDS = 15.0
BookState = tuple[object, ...]


async def read_events(
    socket: MarketDataSocket,
    client: Client,
    *,
    until: Callable[[list[SocketEvent]], bool] = lambda _events: False,
    seconds: float = SECONDS,
    feed: BookFeed | None = None,
    timeout_ok: bool = False,
) -> list[SocketEvent]:
    """Typed events (heartbeats left out) until `until(events)` holds, or for `seconds`
    (a TimeoutError unless `timeout_ok`); every frame also goes through `feed`."""
    events: list[SocketEvent] = []

    async def read() -> None:
        async for message in socket.messages():
            if feed is not None:
                await feed.handle(message)
            if message.WhichOneof("message") == "heartbeat":
                continue
            events.append(to_event(message, client.catalog))
            if until(events):
                return

    if timeout_ok:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(), seconds)
    else:
        await asyncio.wait_for(read(), seconds)
    return events


def book_state(book: LocalOrderBook) -> BookState:
    return (book.seq, book.bids(), book.asks())


async def rest_book_state(client: Client, symbol: str) -> BookState:
    book = await asyncio.to_thread(client.get_order_book, symbol, depth=1000)
    return (book.seq, book.bids, book.asks)
