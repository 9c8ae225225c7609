"""``BookFeed``: a ``LocalOrderBook`` kept in sync from ``book:<SYMBOL>`` on a socket.

It starts from the ``bookSnapshot`` the gateway sends first (or a fetched snapshot), applies
``bookUpdate`` diffs, and on a sequence gap resyncs by itself from
``GET /v1/markets/<SYMBOL>/orderbook`` (``rest_snapshot_source``; falling back to
re-subscribing, which makes the gateway send a fresh snapshot); on a lost connection the book
is out of sync until the new connection's snapshot. Imported as ``exchange_sdk.websocket``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Final

import aiohttp
from exchange.marketdata.v1 import marketdata_pb2
from exchange.websocket.v1 import websocket_pb2
from google.protobuf import json_format

from exchange_sdk._market_data_socket import ConnectionLostError, MarketDataSocket
from exchange_sdk.book import BookDiff, BookSnapshot, DiffOutcome, LocalOrderBook
from exchange_sdk.errors import ExchangeError, exchange_error
from exchange_sdk.models import MarketSpec

# The gateway sends up to 1,000 levels a side in a snapshot; a fetched one must match.
SNAPSHOT_DEPTH: Final = 1000

SnapshotSource = Callable[[str], Awaitable[BookSnapshot]]


def rest_snapshot_source(session: aiohttp.ClientSession, base_url: str) -> SnapshotSource:
    """Fetches ``GET {base_url}/v1/markets/{symbol}/orderbook`` (public, unsigned) at the
    depth of the gateway's WebSocket snapshots, so both describe the whole book."""

    async def fetch(symbol: str) -> BookSnapshot:
        url = f"{base_url.rstrip('/')}/v1/markets/{symbol}/orderbook?depth={SNAPSHOT_DEPTH}"
        async with session.get(url) as answer:
            text = await answer.text()
            if answer.status != 200:
                raise _http_error(answer.status, text)
        response = marketdata_pb2.GetOrderBookResponse()
        json_format.Parse(text, response, ignore_unknown_fields=True)
        return BookSnapshot.from_proto(response.book)

    return fetch


def _http_error(status: int, text: str) -> ExchangeError:
    reason, message = f"HTTP_{status}", text[:200]
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        document = json.loads(text)
        message = str(document.get("message", message))
        for detail in document.get("details", []):
            if str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo"):
                reason = str(detail.get("reason", reason))
    return exchange_error(reason, message)


class BookFeed:
    """Keeps ``book`` in sync with ``book:<symbol>`` on ``socket``; resyncs on gaps.

    Drive it with ``await feed.run()`` (until the connection is lost for good) or feed it
    frames yourself with ``await feed.handle(message)``. ``resyncs`` counts the times the
    book had to start again (a gap, or a lost connection).
    """

    def __init__(
        self,
        socket: MarketDataSocket,
        market: MarketSpec,
        *,
        snapshot_source: SnapshotSource | None = None,
        on_update: Callable[[LocalOrderBook], None] | None = None,
    ) -> None:
        self.socket = socket
        self.book = LocalOrderBook(market)
        self.channel = f"book:{market.symbol}"
        self.resyncs = 0
        self._snapshot_source = snapshot_source
        self._on_update = on_update
        # A snapshot frame is on its way (subscribed again, or a new connection).
        self._snapshot_expected = False
        socket.add_connection_lost_listener(self._connection_lost)

    async def start(self) -> None:
        self._snapshot_expected = True
        await self.socket.subscribe(self.channel)

    async def run(self) -> None:
        """Subscribes and applies frames until the connection is lost for good (raises)."""
        await self.start()
        async for message in self.socket.messages():
            await self.handle(message)

    def _connection_lost(self, lost: ConnectionLostError) -> None:  # noqa: ARG002
        if self.channel in self.socket.channels:
            self.book.invalidate()
            self.resyncs += 1
            self._snapshot_expected = True  # the socket subscribes again: a snapshot follows

    async def handle(self, message: websocket_pb2.ServerMessage) -> None:
        kind = message.WhichOneof("message")
        if message.channel != self.channel:
            return
        if kind == "book_snapshot":
            self._snapshot_expected = False
            self.book.apply_snapshot(BookSnapshot.from_proto(message.book_snapshot.book))
        elif kind == "book_update":
            if self.book.apply_diff(BookDiff.from_proto(message.book_update)) is DiffOutcome.GAP:
                self.resyncs += 1
        else:
            return
        if self.book.needs_snapshot and not self._snapshot_expected:
            await self.resync()
        if self._on_update is not None and self.book.in_sync:
            self._on_update(self.book)

    async def resync(self) -> None:
        """A fresh snapshot: fetched when there is a source, else by re-subscribing."""
        if self._snapshot_source is not None:
            with contextlib.suppress(ExchangeError, aiohttp.ClientError, TimeoutError):
                snapshot = await self._snapshot_source(self.book.market.symbol)
                self.book.apply_snapshot(snapshot)
                if self.book.in_sync:
                    return
        self._snapshot_expected = True
        await self.socket.unsubscribe(self.channel)
        await self.socket.subscribe(self.channel)
