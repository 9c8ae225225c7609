"""The WebSocket market-data client (docs/api/websocket.md) over aiohttp.

- ``MarketDataSocket``: one connection to ``/ws``; ``subscribe``/``unsubscribe``/``ping``/
  ``authenticate`` wait for their reply (matched by ``requestId``; an ``error`` reply
  raises the typed exception of its reason); data frames come out of ``messages()`` as
  ``ServerMessage`` protos or out of ``events()`` as typed events. It pings every
  ``ping_interval_seconds`` (the gateway closes a connection silent for 60 s) and treats
  a connection that sent nothing - not even the 15 s heartbeat - for
  ``silence_timeout_seconds`` as dead.
- Reconnection: a connection that closes (other than for a failed authentication or a
  protocol error, which a retry cannot fix) or goes silent is replaced by a new one after
  a backoff (``ReconnectPolicy``); the socket authenticates again if it was authenticated
  and subscribes again to its channels, so ``messages()`` simply continues (frames sent
  while disconnected are lost; the book channel starts again with a fresh snapshot).
  ``messages()`` raises ``ConnectionLostError`` only when the policy gives up or the close
  cannot be retried. Listeners (``add_connection_lost_listener``) hear every loss.
- ``BookFeed``: a ``LocalOrderBook`` kept from ``book:<SYMBOL>``: it starts from the
  ``bookSnapshot`` the gateway sends first (or a fetched snapshot), applies ``bookUpdate``
  diffs, and on a sequence gap resyncs by itself from ``GET /v1/markets/<SYMBOL>/orderbook``
  (falling back to re-subscribing, which makes the gateway send a fresh snapshot); on a
  lost connection the book is out of sync until the new connection's snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Final

import aiohttp
from exchange.marketdata.v1 import marketdata_pb2
from exchange.websocket.v1 import websocket_pb2
from google.protobuf import json_format

from exchange_sdk._protocol import MarketCatalog
from exchange_sdk.book import BookDiff, BookSnapshot, DiffOutcome, LocalOrderBook
from exchange_sdk.errors import ExchangeError, UnavailableError, error_reason_name, exchange_error
from exchange_sdk.models import (
    Balance,
    CancelReason,
    Candle,
    Liquidity,
    MarketSpec,
    PublicTrade,
    Side,
    Ticker,
)
from exchange_sdk.signing import ApiCredentials, RequestSigner

PRIVATE_CHANNELS: Final = frozenset({"orders", "fills", "balances"})
# Close codes a new connection cannot fix (docs/api/websocket.md): authentication failed,
# protocol error (a frame of ours the gateway refused).
FINAL_CLOSE_CODES: Final = frozenset({4001, 4003})
# The gateway sends up to 1,000 levels a side in a snapshot; a fetched one must match.
SNAPSHOT_DEPTH: Final = 1000
_QUEUE_MAX: Final = 10_000


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a lost connection is replaced: waits of ``backoff_initial_seconds``, doubling up
    to ``backoff_max_seconds``, for at most ``attempts_max`` attempts in a row (0: forever;
    a connection that is restored resets the count)."""

    enabled: bool = True
    attempts_max: int = 0
    backoff_initial_seconds: float = 0.2
    backoff_max_seconds: float = 10.0

    def backoff_seconds(self, attempt: int) -> float:
        doubled = self.backoff_initial_seconds * 2 ** (attempt - 1)
        return float(min(self.backoff_max_seconds, doubled))

    def gives_up(self, attempt: int) -> bool:
        return not self.enabled or (self.attempts_max > 0 and attempt > self.attempts_max)


NO_RECONNECT: Final = ReconnectPolicy(enabled=False)


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
        close_timeout_seconds: float = 2.0,
        reconnect: ReconnectPolicy = ReconnectPolicy(),
    ) -> None:
        self.url = url
        self._signer = None if credentials is None else RequestSigner(credentials)
        self._own_session = session is None
        self._session = session
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._ping_interval = ping_interval_seconds
        self._silence_timeout = silence_timeout_seconds
        self._reply_timeout = reply_timeout_seconds
        self._close_timeout = close_timeout_seconds
        self.reconnect_policy = reconnect
        self._listeners: list[Callable[[ConnectionLostError], None]] = []
        self._closing = False
        self._reader: asyncio.Task[ConnectionLostError] | None = None
        # Connections opened after the first one (each re-authenticated and re-subscribed).
        self.reconnects = 0
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

    def add_connection_lost_listener(self, listener: Callable[[ConnectionLostError], None]) -> None:
        """``listener`` is called at every lost connection (before any reconnection)."""
        self._listeners.append(listener)

    # ---- lifecycle ----
    async def connect(self) -> MarketDataSocket:
        """Opens the first connection (failing at once if the gateway cannot be reached)."""
        self._closing = False
        self._socket = await self._open()
        self._tasks = [
            asyncio.create_task(self._supervise(self._socket)),
            asyncio.create_task(self._keep_alive()),
        ]
        return self

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return await self._session.ws_connect(
            self.url,
            autoping=True,
            timeout=aiohttp.ClientWSTimeout(ws_close=self._close_timeout),
        )

    async def close(self) -> None:
        self._closing = True
        tasks = [*self._tasks, *([self._reader] if self._reader is not None else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._reader = None
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

    async def _supervise(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        """Reads frames; replaces a lost connection (ReconnectPolicy) and restores its
        authentication and subscriptions; ends by queueing the final ConnectionLostError."""
        attempt = 0
        restoring = False
        while True:
            self._reader = asyncio.create_task(self._read_frames(socket))
            if restoring and await self._restore():
                attempt = 0
            lost = await self._reader
            self._reader = None
            for reply in self._replies.values():
                if not reply.done():
                    reply.set_exception(lost)
            for listener in self._listeners:
                listener(lost)
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                await socket.close()
            if self._closing or lost.close_code in FINAL_CLOSE_CODES:
                await self._data.put(lost)
                return
            while True:
                attempt += 1
                if self.reconnect_policy.gives_up(attempt):
                    await self._data.put(lost)
                    return
                await asyncio.sleep(self.reconnect_policy.backoff_seconds(attempt))
                try:
                    socket = await self._open()
                except (aiohttp.ClientError, OSError, TimeoutError):
                    continue
                break
            self._socket = socket
            self.reconnects += 1
            restoring = True

    async def _restore(self) -> bool:
        """Authenticates again (if it was) and re-subscribes; False if that failed (the
        reader then sees the connection end, or it is alive but refused something)."""
        try:
            if self.account_id is not None:
                await self.authenticate()
            public = sorted(channel for channel in self.channels if channel not in PRIVATE_CHANNELS)
            private = sorted(self.channels & PRIVATE_CHANNELS)
            for channels in (public, private):
                if channels:
                    await self.subscribe(*channels)
        except (ExchangeError, TimeoutError, aiohttp.ClientError, ConnectionError):
            return False
        return True

    async def _read_frames(self, socket: aiohttp.ClientWebSocketResponse) -> ConnectionLostError:
        while True:
            try:
                frame = await socket.receive(timeout=self._silence_timeout)
            except TimeoutError:
                return ConnectionLostError("nothing heard from the gateway", close_code=None)
            if frame.type == aiohttp.WSMsgType.TEXT:
                self._dispatch(parse_server_message(str(frame.data)))
                continue
            if frame.type in {
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            }:
                code = socket.close_code
                return ConnectionLostError(f"closed by the gateway ({code})", close_code=code)
            if frame.type == aiohttp.WSMsgType.ERROR:
                return ConnectionLostError(f"connection error: {frame.data}", close_code=None)

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
            with contextlib.suppress(
                ExchangeError, TimeoutError, ConnectionError, aiohttp.ClientError, RuntimeError
            ):
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
    liquidity: Liquidity
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    fee: Decimal
    fee_asset: str
    remaining_quantity: Decimal


@dataclass(frozen=True)
class OrderEvent:
    """A change of one of the account's orders (private ``orders`` channel): ``change`` is
    ``accepted``, ``rejected``, ``amended``, ``cancelled`` or ``expired``; ``reason`` is the
    rejection's ErrorInfo reason or the cancel/expiry reason's name. Amounts in whole units
    of ``symbol``'s market (None where the change has no such amount, or the market is not
    known): ``price``/``quantity`` the order's limit price and quantity after an accept or
    an amend; ``filled_quantity`` what had filled when it was cancelled or expired."""

    channel: str
    seq: int
    change: str
    order_id: str
    client_order_id: str
    side: Side
    reason: str
    message: websocket_pb2.OrderUpdate = field(repr=False, compare=False)
    symbol: str = ""
    price: Decimal | None = None
    quantity: Decimal | None = None
    filled_quantity: Decimal | None = None


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


SocketEvent = (
    TradeEvent | CandleEvent | TickerEvent | FillEvent | OrderEvent | BalanceEvent | RawEvent
)


def to_event(message: websocket_pb2.ServerMessage, catalog: MarketCatalog) -> SocketEvent:
    """The typed event of a data frame; RawEvent when its market or asset is not known."""
    kind = message.WhichOneof("message") or ""
    channel = message.channel
    if kind == "order":
        return _order_event(channel, message.order, catalog.markets.get(message.order.symbol))
    if kind == "balance":
        scale = catalog.known_asset_scale(message.balance.balance.asset)
        if scale is None:
            return RawEvent(channel, kind, message)
        balance = Balance.from_proto(message.balance.balance, scale)
        return BalanceEvent(channel, balance, message.balance.engine_seq)
    symbol = {
        "trade": message.trade.trade.symbol,
        "candle": message.candle.candle.symbol,
        "ticker": message.ticker.ticker.symbol,
        "fill": message.fill.symbol,
    }.get(kind, "")
    spec = catalog.markets.get(symbol)
    event: SocketEvent = RawEvent(channel, kind, message)
    if spec is None:
        pass
    elif kind == "trade":
        event = TradeEvent(channel, PublicTrade.from_proto(message.trade.trade, spec))
    elif kind == "candle":
        event = CandleEvent(channel, Candle.from_proto(message.candle.candle, spec))
    elif kind == "ticker":
        event = TickerEvent(channel, Ticker.from_proto(message.ticker.ticker, spec))
    elif kind == "fill":
        event = _fill_event(channel, message.fill, spec)
    return event


def _fill_event(channel: str, fill: websocket_pb2.FillUpdate, spec: MarketSpec) -> FillEvent:
    return FillEvent(
        channel=channel,
        trade_id=fill.trade_id,
        order_id=fill.order_id,
        client_order_id=fill.client_order_id,
        symbol=fill.symbol,
        side=Side.from_proto(fill.side),
        liquidity=Liquidity.from_proto(fill.liquidity),
        price=spec.price(fill.price),
        quantity=spec.quantity(fill.quantity),
        quote_quantity=spec.quote(fill.quote_quantity),
        fee=spec.quote(fill.fee),
        fee_asset=fill.fee_asset,
        remaining_quantity=spec.quantity(fill.remaining_quantity),
    )


def _order_event(
    channel: str, update: websocket_pb2.OrderUpdate, spec: MarketSpec | None
) -> OrderEvent:
    change = update.WhichOneof("change") or ""
    side, reason = Side.UNSPECIFIED, ""
    price = quantity = filled = None
    if spec is not None and change in ("accepted", "amended"):
        order = getattr(update, change)
        price, quantity = spec.price(order.price), spec.quantity(order.quantity)
    if spec is not None and change in ("cancelled", "expired"):
        filled = spec.quantity(getattr(update, change).filled_quantity)
    if change == "accepted":
        side = Side.from_proto(update.accepted.side)
    elif change == "rejected":
        side = Side.from_proto(update.rejected.side)
        reason = error_reason_name(update.rejected.reason)
    elif change == "cancelled":
        reason = CancelReason.from_proto(update.cancelled.reason).name
    elif change == "expired":
        reason = CancelReason.from_proto(update.expired.reason).name
    payload = getattr(update, change) if change else None
    return OrderEvent(
        channel=channel,
        seq=update.seq,
        change=change,
        order_id=getattr(payload, "order_id", ""),
        client_order_id=getattr(payload, "client_order_id", ""),
        side=side,
        reason=reason,
        message=update,
        symbol=update.symbol,
        price=price,
        quantity=quantity,
        filled_quantity=filled,
    )


# ---------------------------------------------------------------- the book feed

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
