"""The WebSocket market-data client (docs/api/websocket.md) over aiohttp.

- ``MarketDataSocket``: one connection to ``/ws``; ``subscribe``/``unsubscribe``/``ping``/
  ``authenticate`` wait for their reply (matched by ``requestId``; an ``error`` reply
  raises the typed exception of its reason); data frames come out of ``messages()`` as
  ``ServerMessage`` protos or out of ``events()`` as typed events. It pings every
  ``ping_interval_seconds`` (the gateway closes a connection silent for 60 s) and treats
  a connection that sent nothing - not even the 15 s heartbeat - for
  ``silence_timeout_seconds`` as dead (``ConnectionLostError``).
- ``BookFeed``: a ``LocalOrderBook`` kept from ``book:<SYMBOL>``: it starts from the
  ``bookSnapshot`` the gateway sends first (or a fetched snapshot), applies ``bookUpdate``
  diffs, and on a sequence gap resyncs by itself from ``GET /v1/markets/<SYMBOL>/orderbook``
  (falling back to re-subscribing, which makes the gateway send a fresh snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import aiohttp
from exchange.marketdata.v1 import marketdata_pb2
from exchange.websocket.v1 import websocket_pb2
from google.protobuf import json_format

from exchange_sdk._protocol import MarketCatalog
from exchange_sdk.book import BookDiff, BookSnapshot, DiffOutcome, LocalOrderBook
from exchange_sdk.errors import ExchangeError, UnavailableError, error_reason_name, exchange_error
from exchange_sdk.models import Balance, Candle, MarketSpec, PublicTrade, Side, Ticker
from exchange_sdk.signing import ApiCredentials, RequestSigner

PRIVATE_CHANNELS: Final = frozenset({"orders", "fills", "balances"})
_QUEUE_MAX: Final = 10_000


class ConnectionLostError(UnavailableError):
    """The WebSocket closed or went silent; ``close_code`` says why (None: silence)."""

    def __init__(self, message: str, *, close_code: int | None) -> None:
        super().__init__("CONNECTION_LOST", message, metadata={"close_code": str(close_code)})
        self.close_code = close_code


def parse_server_message(text: str) -> websocket_pb2.ServerMessage:
    """A text frame as a ServerMessage (unknown fields ignored: newer gateways may add some)."""
    message = websocket_pb2.ServerMessage()
    json_format.Parse(text, message, ignore_unknown_fields=True)
    return message


def client_frame(message: websocket_pb2.ClientMessage) -> str:
    return json_format.MessageToJson(message, indent=None)


class MarketDataSocket:
    """One WebSocket connection to the gateway (through Envoy)."""

    def __init__(
        self,
        url: str,
        *,
        credentials: ApiCredentials | None = None,
        session: aiohttp.ClientSession | None = None,
        ping_interval_seconds: float = 20.0,
        silence_timeout_seconds: float = 45.0,
        reply_timeout_seconds: float = 10.0,
    ) -> None:
        self.url = url
        self._signer = None if credentials is None else RequestSigner(credentials)
        self._own_session = session is None
        self._session = session
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._ping_interval = ping_interval_seconds
        self._silence_timeout = silence_timeout_seconds
        self._reply_timeout = reply_timeout_seconds
        self._request_ids = itertools.count(1)
        self._replies: dict[str, asyncio.Future[websocket_pb2.ServerMessage]] = {}
        self._data: asyncio.Queue[websocket_pb2.ServerMessage | ConnectionLostError] = (
            asyncio.Queue(_QUEUE_MAX)
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.account_id: str | None = None
        self.channels: set[str] = set()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session (after ``connect``), e.g. for ``rest_snapshot_source``."""
        if self._session is None:
            raise RuntimeError("connect() first")
        return self._session

    # ---- lifecycle ----
    async def connect(self) -> MarketDataSocket:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._socket = await self._session.ws_connect(self.url, autoping=True)
        self._tasks = [
            asyncio.create_task(self._read_frames()),
            asyncio.create_task(self._keep_alive()),
        ]
        return self

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._socket is not None:
            await self._socket.close()
            self._socket = None
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> MarketDataSocket:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- requests ----
    async def subscribe(self, *channels: str) -> tuple[str, ...]:
        request = websocket_pb2.ClientMessage(subscribe=websocket_pb2.Subscribe(channels=channels))
        reply = await self._request(request)
        self.channels.update(reply.subscribed.channels)
        return tuple(reply.subscribed.channels)

    async def unsubscribe(self, *channels: str) -> tuple[str, ...]:
        request = websocket_pb2.ClientMessage(
            unsubscribe=websocket_pb2.Unsubscribe(channels=channels)
        )
        reply = await self._request(request)
        self.channels.difference_update(reply.unsubscribed.channels)
        return tuple(reply.unsubscribed.channels)

    async def ping(self) -> None:
        await self._request(websocket_pb2.ClientMessage(ping=websocket_pb2.Ping()))

    async def authenticate(self) -> str:
        """Authenticates for the private channels (orders, fills, balances); the account id."""
        if self._signer is None:
            raise ExchangeError("API_KEY_MISSING", "authenticate needs an API key and secret")
        signed = self._signer.websocket_authentication()
        request = websocket_pb2.ClientMessage(
            authenticate=websocket_pb2.Authenticate(
                api_key=signed.api_key, timestamp_ms=signed.timestamp_ms, signature=signed.signature
            )
        )
        reply = await self._request(request)
        self.account_id = reply.authenticated.account_id
        return self.account_id

    async def _request(self, message: websocket_pb2.ClientMessage) -> websocket_pb2.ServerMessage:
        if self._socket is None:
            raise RuntimeError("connect() first")
        request_id = str(next(self._request_ids))
        message.request_id = request_id
        reply: asyncio.Future[websocket_pb2.ServerMessage] = (
            asyncio.get_running_loop().create_future()
        )
        self._replies[request_id] = reply
        try:
            await self._socket.send_str(client_frame(message))
            answer = await asyncio.wait_for(reply, self._reply_timeout)
        finally:
            self._replies.pop(request_id, None)
        if answer.WhichOneof("message") == "error":
            raise socket_error(answer.error)
        return answer

    # ---- receiving ----
    async def messages(self) -> AsyncIterator[websocket_pb2.ServerMessage]:
        """Data frames (and heartbeats) in arrival order; raises ConnectionLostError at the end."""
        while True:
            item = await self._data.get()
            if isinstance(item, ConnectionLostError):
                raise item
            yield item

    async def events(self, catalog: MarketCatalog) -> AsyncIterator[SocketEvent]:
        """Data frames as typed events (markets from ``catalog``; unknown ones come raw)."""
        async for message in self.messages():
            yield to_event(message, catalog)

    async def _read_frames(self) -> None:
        socket = self._socket
        if socket is None:
            return
        lost: ConnectionLostError
        while True:
            try:
                frame = await socket.receive(timeout=self._silence_timeout)
            except TimeoutError:
                lost = ConnectionLostError("nothing heard from the gateway", close_code=None)
                break
            if frame.type == aiohttp.WSMsgType.TEXT:
                self._dispatch(parse_server_message(str(frame.data)))
                continue
            if frame.type in {
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            }:
                code = socket.close_code
                lost = ConnectionLostError(f"closed by the gateway ({code})", close_code=code)
                break
            if frame.type == aiohttp.WSMsgType.ERROR:
                lost = ConnectionLostError(f"connection error: {frame.data}", close_code=None)
                break
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(lost)
        await self._data.put(lost)

    def _dispatch(self, message: websocket_pb2.ServerMessage) -> None:
        reply = self._replies.get(message.request_id) if message.request_id else None
        if reply is not None and not reply.done():
            reply.set_result(message)
            return
        if self._data.full():
            self._data.get_nowait()  # bounded: the consumer is too slow; drop the oldest
        self._data.put_nowait(message)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._ping_interval)
            with contextlib.suppress(ExchangeError, TimeoutError, ConnectionError):
                await self.ping()


def socket_error(error: websocket_pb2.Error) -> ExchangeError:
    reason = error_reason_name(error.reason) if error.reason else "UNSPECIFIED"
    return exchange_error(reason, error.message)


# ---------------------------------------------------------------- typed events


@dataclass(frozen=True)
class TradeEvent:
    channel: str
    trade: PublicTrade


@dataclass(frozen=True)
class CandleEvent:
    channel: str
    candle: Candle


@dataclass(frozen=True)
class TickerEvent:
    channel: str
    ticker: Ticker


@dataclass(frozen=True)
class FillEvent:
    """One of the account's fills (private ``fills`` channel)."""

    channel: str
    trade_id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: Side
    price: Any
    quantity: Any
    fee: Any
    fee_asset: str
    remaining_quantity: Any


@dataclass(frozen=True)
class BalanceEvent:
    channel: str
    balance: Balance
    engine_seq: int


@dataclass(frozen=True)
class RawEvent:
    """Anything else (book frames, order updates, heartbeats), as the proto message."""

    channel: str
    kind: str
    message: websocket_pb2.ServerMessage


SocketEvent = TradeEvent | CandleEvent | TickerEvent | FillEvent | BalanceEvent | RawEvent


def to_event(message: websocket_pb2.ServerMessage, catalog: MarketCatalog) -> SocketEvent:
    """The typed event of a data frame; RawEvent when its market or asset is not known."""
    kind = message.WhichOneof("message") or ""
    markets = catalog.markets

    def market(symbol: str) -> MarketSpec | None:
        return markets.get(symbol)

    if kind == "trade" and (spec := market(message.trade.trade.symbol)) is not None:
        return TradeEvent(message.channel, PublicTrade.from_proto(message.trade.trade, spec))
    if kind == "candle" and (spec := market(message.candle.candle.symbol)) is not None:
        return CandleEvent(message.channel, Candle.from_proto(message.candle.candle, spec))
    if kind == "ticker" and (spec := market(message.ticker.ticker.symbol)) is not None:
        return TickerEvent(message.channel, Ticker.from_proto(message.ticker.ticker, spec))
    if kind == "fill" and (spec := market(message.fill.symbol)) is not None:
        fill = message.fill
        return FillEvent(
            channel=message.channel,
            trade_id=fill.trade_id,
            order_id=fill.order_id,
            client_order_id=fill.client_order_id,
            symbol=fill.symbol,
            side=Side.from_proto(fill.side),
            price=spec.price(fill.price),
            quantity=spec.quantity(fill.quantity),
            fee=spec.quote(fill.fee),
            fee_asset=fill.fee_asset,
            remaining_quantity=spec.quantity(fill.remaining_quantity),
        )
    if kind == "balance":
        scale = _scale_of(catalog, message.balance.balance.asset)
        if scale is not None:
            balance = Balance.from_proto(message.balance.balance, scale)
            return BalanceEvent(message.channel, balance, message.balance.engine_seq)
    return RawEvent(message.channel, kind, message)


def _scale_of(catalog: MarketCatalog, asset: str) -> int | None:
    for spec in catalog.markets.values():
        if asset == spec.base_asset:
            return spec.base_scale
        if asset == spec.quote_asset:
            return spec.quote_scale
    return None


# ---------------------------------------------------------------- the book feed

SnapshotSource = Callable[[str], Awaitable[BookSnapshot]]


def rest_snapshot_source(session: aiohttp.ClientSession, base_url: str) -> SnapshotSource:
    """Fetches ``GET {base_url}/v1/markets/{symbol}/orderbook`` (public, unsigned)."""

    async def fetch(symbol: str) -> BookSnapshot:
        async with session.get(f"{base_url.rstrip('/')}/v1/markets/{symbol}/orderbook") as answer:
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

    Drive it with ``await feed.run()`` (until the connection ends) or feed it frames
    yourself with ``await feed.handle(message)``.
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
        self._resync_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.socket.subscribe(self.channel)

    async def run(self) -> None:
        """Subscribes and applies frames until the connection is lost (which raises)."""
        await self.start()
        async for message in self.socket.messages():
            await self.handle(message)

    async def handle(self, message: websocket_pb2.ServerMessage) -> None:
        kind = message.WhichOneof("message")
        if message.channel != self.channel:
            return
        if kind == "book_snapshot":
            self.book.apply_snapshot(BookSnapshot.from_proto(message.book_snapshot.book))
        elif kind == "book_update":
            outcome = self.book.apply_diff(BookDiff.from_proto(message.book_update))
            if outcome is DiffOutcome.GAP:
                await self.resync()
        else:
            return
        if self._on_update is not None and self.book.in_sync:
            self._on_update(self.book)

    async def resync(self) -> None:
        """A fresh snapshot: fetched when there is a source, else by re-subscribing."""
        self.resyncs += 1
        if self._snapshot_source is not None:
            with contextlib.suppress(ExchangeError, aiohttp.ClientError, TimeoutError):
                snapshot = await self._snapshot_source(self.book.market.symbol)
                self.book.apply_snapshot(snapshot)
                if self.book.in_sync:
                    return
        await self.socket.unsubscribe(self.channel)
        await self.socket.subscribe(self.channel)
