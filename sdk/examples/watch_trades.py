"""Watch public trades and keep a local order book of BTC-USDT over the WebSocket."""

import asyncio

from exchange_sdk import Client
from exchange_sdk.config import resolve_settings
from exchange_sdk.websocket import (
    BookFeed,
    MarketDataSocket,
    TradeEvent,
    rest_snapshot_source,
    to_event,
)

settings = resolve_settings()


async def main(trades_wanted: int = 5) -> None:
    with Client(settings.endpoint, catalog=settings.catalog()) as client:
        market = client.get_market("BTC-USDT")
    async with MarketDataSocket(settings.websocket_url) as socket:
        snapshots = rest_snapshot_source(socket.session, settings.http_url)
        feed = BookFeed(socket, market, snapshot_source=snapshots)
        await feed.start()
        await socket.subscribe("trades:BTC-USDT")
        seen = 0
        async for message in socket.messages():
            await feed.handle(message)  # the book keeps itself in sync (resyncs on gaps)
            event = to_event(message, client.catalog)
            if isinstance(event, TradeEvent):
                seen += 1
                best_bid = feed.book.best_bid()
                print(f"trade {event.trade.quantity} @ {event.trade.price}; best bid {best_bid}")
                if seen >= trades_wanted:
                    return


asyncio.run(main())
