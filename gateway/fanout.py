"""WebSocket fan-out with backpressure (protocol: proto/exchange/websocket/v1/websocket.proto,
documented in docs/api/websocket.md).

Guarantees:
- Every connection has one bounded outbound queue (`FanoutLimits.queued_messages_max`);
  replies, trades and private updates keep their order in it.
- Conflating channels hold at most one pending entry per channel: `ticker:*` and
  `candles:*` keep the latest message; `book:*` merges pending diffs into one diff from the
  first pending `previous_seq` to the last `seq` with the latest quantity per price, so a
  client that applies it lands exactly where it would have after every diff.
- A connection whose queue is full when a non-conflating message arrives is closed with
  CLOSE_CODE_SLOW_CONSUMER (4000) and dropped from every channel at once: the others never
  wait for it, and the memory one connection holds is bounded by its queue.
- At most `connections_max` connections (CLOSE_CODE_CONNECTION_LIMIT, 4002, beyond);
  at most `subscriptions_max` channels each; frames above `frame_bytes_max` are refused.
- A message is serialized once per publish, not once per subscriber.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from exchange.common.v1 import errors_pb2
from exchange.marketdata.v1 import types_pb2 as marketdata_types_pb2
from exchange.websocket.v1 import websocket_pb2
from google.protobuf import json_format

from gateway.authorization import Authorizer
from gateway.edge_wire_names import WEBSOCKET_PATH
from gateway.errors import EdgeError
from gateway.signing import rest_canonical

_LOG = logging.getLogger(__name__)
_SYMBOL = r"[A-Z0-9]{1,16}-[A-Z0-9]{1,16}"
_PUBLIC_CHANNEL = re.compile(
    rf"^(trades:{_SYMBOL}|book:{_SYMBOL}|ticker:{_SYMBOL}|candles:{_SYMBOL}:(1m|5m|1h|1d))$"
)
PRIVATE_CHANNELS = frozenset({"orders", "fills", "balances"})
_LATEST_ONLY = frozenset({"ticker", "candles"})


@dataclass(frozen=True)
class FanoutLimits:
    connections_max: int = 10_000
    queued_messages_max: int = 1024
    subscriptions_max: int = 64
    frame_bytes_max: int = 4096
    heartbeat_seconds: float = 15.0
    idle_timeout_seconds: float = 60.0
    # Kernel send buffer per connection: keeps backpressure visible to the queue.
    socket_send_buffer_bytes: int = 64 * 1024


def to_json(message: websocket_pb2.ServerMessage) -> str:
    return json_format.MessageToJson(message, indent=None)


class _Pending:
    """A conflated entry: the latest text, or a merged book diff serialized when sent."""

    __slots__ = ("book", "text")

    def __init__(self, text: str | None, book: websocket_pb2.ServerMessage | None) -> None:
        self.text = text
        self.book = book

    def render(self) -> str:
        if self.text is None:
            if self.book is None:
                message = "a pending entry holds neither text nor a book diff"
                raise RuntimeError(message)
            self.text = to_json(self.book)
        return self.text


class OutboundQueue:
    """One connection's bounded, conflating queue (no I/O: unit-testable)."""

    def __init__(self, messages_max: int) -> None:
        self._messages_max = messages_max
        self._entries: deque[str | _Pending] = deque()
        self._pending: dict[str, _Pending] = {}
        self.conflated = 0
        self.high_water = 0

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, text: str) -> bool:
        """Appends in order; False when the queue is full (the consumer is too slow)."""
        if len(self._entries) >= self._messages_max:
            return False
        self._entries.append(text)
        self.high_water = max(self.high_water, len(self._entries))
        return True

    def push_snapshot(self, key: str, text: str) -> bool:
        """Appends a book snapshot; later diffs of `key` queue after it (a diff still
        pending from before stays ahead of it: applying it, then the snapshot, is exact)."""
        self._pending.pop(key, None)
        return self.push(text)

    def push_latest(self, key: str, text: str) -> None:
        """Replaces a pending message of `key`, or appends one (one per key at most)."""
        pending = self._pending.get(key)
        if pending is not None:
            pending.text = text
            self.conflated += 1
            return
        self._append_pending(key, _Pending(text, None))

    def push_book(self, key: str, message: websocket_pb2.ServerMessage, text: str) -> None:
        """Merges a book diff into the pending diff of `key`, or appends it."""
        pending = self._pending.get(key)
        if pending is None or pending.book is None:
            self._append_pending(key, _Pending(text, message))
            return
        pending.book = merge_book_updates(pending.book, message)
        pending.text = None
        self.conflated += 1

    def _append_pending(self, key: str, pending: _Pending) -> None:
        # Conflating channels hold one entry each, so they cannot grow without bound.
        self._pending[key] = pending
        self._entries.append(pending)
        self.high_water = max(self.high_water, len(self._entries))

    def pop(self) -> str | None:
        if not self._entries:
            return None
        entry = self._entries.popleft()
        if isinstance(entry, str):
            return entry
        for key, pending in self._pending.items():
            if pending is entry:
                del self._pending[key]
                break
        return entry.render()

    def clear(self) -> None:
        self._entries.clear()
        self._pending.clear()


def merge_book_updates(
    earlier: websocket_pb2.ServerMessage, later: websocket_pb2.ServerMessage
) -> websocket_pb2.ServerMessage:
    """One diff equal to applying `earlier` then `later` (previous_seq of the first, seq of
    the last, the latest quantity per price; quantity 0 still removes the level)."""
    first, last = earlier.book_update, later.book_update
    bids = {level.price: level for level in first.bids}
    bids.update({level.price: level for level in last.bids})
    asks = {level.price: level for level in first.asks}
    asks.update({level.price: level for level in last.asks})
    merged = websocket_pb2.ServerMessage(channel=later.channel)
    update = merged.book_update
    update.symbol = last.symbol
    update.previous_seq = first.previous_seq
    update.seq = last.seq
    update.bids.extend(sorted(bids.values(), key=lambda level: -level.price))
    update.asks.extend(sorted(asks.values(), key=lambda level: level.price))
    return merged


@dataclass
class FanoutStats:
    slow_consumer_disconnects: int = 0
    refused_connections: int = 0
    published: int = 0
    queue_high_water: int = 0


class Connection:
    """One WebSocket client: its queue, subscriptions and account (after Authenticate)."""

    def __init__(
        self,
        hub: Hub,
        socket_response: web.WebSocketResponse,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self._hub = hub
        self._socket = socket_response
        self._transport = transport
        self.queue = OutboundQueue(hub.limits.queued_messages_max)
        self.channels: set[str] = set()
        self.account_id = ""
        self.closed = False
        self.close_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def deliver(self, kind: str, key: str, message: websocket_pb2.ServerMessage, text: str) -> None:
        if self.closed:
            return
        if kind in _LATEST_ONLY:
            self.queue.push_latest(key, text)
        elif kind == "book":
            self.queue.push_book(key, message, text)
        elif not self.queue.push(text):
            self.close_slow()
            return
        self._hub.stats.queue_high_water = max(
            self._hub.stats.queue_high_water, self.queue.high_water
        )
        self._wake.set()

    def reply(self, message: websocket_pb2.ServerMessage) -> None:
        self.deliver("reply", "", message, to_json(message))

    def close_slow(self) -> None:
        self._hub.stats.slow_consumer_disconnects += 1
        self._end(websocket_pb2.CLOSE_CODE_SLOW_CONSUMER, "slow consumer")

    def _end(self, code: int, text: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._hub.remove(self)
        self.queue.clear()
        self._wake.set()
        self.close_task = self._hub.spawn(self._close(code, text))

    async def _close(self, code: int, text: str) -> None:
        try:
            await asyncio.wait_for(self._socket.close(code=code, message=text.encode()), 2.0)
        except (TimeoutError, ConnectionError):
            # The peer reads nothing: drop the TCP connection rather than wait on it.
            if self._transport is not None:
                self._transport.abort()

    async def run_writer(self) -> None:
        try:
            while not self.closed:
                await self._wake.wait()
                self._wake.clear()
                while not self.closed and (text := self.queue.pop()) is not None:
                    await self._socket.send_str(text)
        except ConnectionError:
            self.closed = True

    async def run_heartbeats(self) -> None:
        while not self.closed:
            await asyncio.sleep(self._hub.limits.heartbeat_seconds)
            heartbeat = websocket_pb2.ServerMessage()
            heartbeat.heartbeat.server_time.GetCurrentTime()
            self.reply(heartbeat)

    async def handle(self, frame: str, authorizer: Authorizer) -> None:
        try:
            request = json_format.Parse(frame, websocket_pb2.ClientMessage())
        except json_format.ParseError as error:
            self._end(
                websocket_pb2.CLOSE_CODE_PROTOCOL_ERROR, f"not a ClientMessage: {error}"[:120]
            )
            return
        answer = websocket_pb2.ServerMessage(request_id=request.request_id)
        kind = request.WhichOneof("message")
        try:
            if kind == "subscribe":
                answer.subscribed.channels.extend(self._subscribe(request.subscribe.channels))
            elif kind == "unsubscribe":
                answer.unsubscribed.channels.extend(self._unsubscribe(request.unsubscribe.channels))
            elif kind == "ping":
                answer.pong.SetInParent()
            elif kind == "authenticate":
                answer.authenticated.account_id = await self._authenticate(
                    request.authenticate, authorizer
                )
            else:
                raise EdgeError("FIELD_INVALID", "empty ClientMessage")
            if kind == "subscribe":
                self.reply(answer)
                self._send_book_snapshots(answer.subscribed.channels)
                return
        except EdgeError as error:
            answer.error.reason = _reason_value(error.reason)
            answer.error.message = str(error)
            if kind != "authenticate":
                self.reply(answer)
                return
            # The error goes out before the close frame, ahead of anything still queued.
            await self._socket.send_str(to_json(answer))
            self._end(websocket_pb2.CLOSE_CODE_AUTHENTICATION_FAILED, error.reason)
            return
        self.reply(answer)

    def _send_book_snapshots(self, channels: Iterable[str]) -> None:
        """A `bookSnapshot` right after the `subscribed` reply, for each book channel whose
        market the hub knows: diffs published later continue from its seq."""
        provider = self._hub.book_snapshot
        if provider is None:
            return
        for channel in channels:
            if not channel.startswith("book:") or self.closed:
                continue
            book = provider(channel.removeprefix("book:"))
            if book is None:
                continue
            message = websocket_pb2.ServerMessage(channel=channel)
            message.book_snapshot.book.CopyFrom(book)
            if not self.queue.push_snapshot(channel, to_json(message)):
                self.close_slow()
                return
            self._wake.set()

    def _subscribe(self, channels: Iterable[str]) -> list[str]:
        names = list(channels)
        for name in names:
            if name in PRIVATE_CHANNELS:
                if not self.account_id:
                    raise EdgeError("API_KEY_MISSING", f"{name} needs an Authenticate first")
            elif not _PUBLIC_CHANNEL.match(name):
                raise EdgeError("FIELD_INVALID", f"no channel {name!r}", {"field": "channels"})
        if len(self.channels | set(names)) > self._hub.limits.subscriptions_max:
            raise EdgeError("FIELD_INVALID", "too many subscriptions", {"field": "channels"})
        for name in names:
            self.channels.add(name)
            self._hub.subscribe(self, self.hub_key(name))
        return names

    def _unsubscribe(self, channels: Iterable[str]) -> list[str]:
        names = [name for name in channels if name in self.channels]
        for name in names:
            self.channels.discard(name)
            self._hub.unsubscribe(self, self.hub_key(name))
        return names

    def hub_key(self, channel: str) -> str:
        """The hub's key of a channel: private channels are per account."""
        return private_key(channel, self.account_id) if channel in PRIVATE_CHANNELS else channel

    async def _authenticate(
        self, authenticate: websocket_pb2.Authenticate, authorizer: Authorizer
    ) -> str:
        stamp = str(authenticate.timestamp_ms)
        key, _ = await authorizer.authenticate(
            key_id=authenticate.api_key,
            timestamp_text=stamp,
            signature=authenticate.signature,
            canonical=lambda: rest_canonical(
                method="GET", path=WEBSOCKET_PATH, timestamp_ms=stamp, body=b""
            ),
        )
        if self.account_id and self.account_id != key.account_id:
            raise EdgeError("PERMISSION_DENIED", "the connection is another account's already")
        self.account_id = key.account_id
        return key.account_id

    def end(self, code: int, text: str) -> None:
        self._end(code, text)


def private_key(kind: str, account_id: str) -> str:
    return f"{kind}@{account_id}"


def _reason_value(reason: str) -> errors_pb2.ErrorReason.ValueType:
    return errors_pb2.ErrorReason.Value(f"ERROR_REASON_{reason}")


@dataclass
class Hub:
    """Channels and their subscribers; `publish` is called by the event consumers."""

    limits: FanoutLimits = field(default_factory=FanoutLimits)
    stats: FanoutStats = field(default_factory=FanoutStats)
    # symbol -> the book a `book:<symbol>` subscription starts from (None: unknown market).
    book_snapshot: Callable[[str], marketdata_types_pb2.OrderBook | None] | None = None
    _subscribers: dict[str, set[Connection]] = field(default_factory=dict)
    _connections: set[Connection] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def add(self, connection: Connection) -> bool:
        if len(self._connections) >= self.limits.connections_max:
            self.stats.refused_connections += 1
            return False
        self._connections.add(connection)
        return True

    def remove(self, connection: Connection) -> None:
        self._connections.discard(connection)
        for channel in connection.channels:
            self._subscribers.get(connection.hub_key(channel), set()).discard(connection)

    def subscribe(self, connection: Connection, key: str) -> None:
        self._subscribers.setdefault(key, set()).add(connection)

    def unsubscribe(self, connection: Connection, key: str) -> None:
        self._subscribers.get(key, set()).discard(connection)

    def publish(self, channel: str, message: websocket_pb2.ServerMessage) -> None:
        """Sends a public channel's message (`trades:BTC-USDT`, `book:...`) to its subscribers."""
        self._publish(channel, channel, message)

    def publish_private(
        self, kind: str, account_id: str, message: websocket_pb2.ServerMessage
    ) -> None:
        """Sends one account's `orders`, `fills` or `balances` update to that account only."""
        self._publish(private_key(kind, account_id), kind, message)

    def _publish(self, key: str, channel: str, message: websocket_pb2.ServerMessage) -> None:
        subscribers = self._subscribers.get(key)
        if not subscribers:
            return
        message.channel = channel
        text = to_json(message)
        kind = channel.split(":", 1)[0]
        self.stats.published += 1
        for connection in list(subscribers):
            connection.deliver(kind, key, message, text)


_HUB = web.AppKey("hub", Hub)
_WS_AUTHORIZER = web.AppKey("ws_authorizer", Authorizer)


def add_websocket_route(app: web.Application, hub: Hub, authorizer: Authorizer) -> None:
    app[_HUB] = hub
    app[_WS_AUTHORIZER] = authorizer
    app.router.add_get(WEBSOCKET_PATH, _websocket)


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    hub = request.app[_HUB]
    socket_response = web.WebSocketResponse(
        max_msg_size=hub.limits.frame_bytes_max, autoping=True, heartbeat=None
    )
    await socket_response.prepare(request)
    transport_socket = request.transport.get_extra_info("socket") if request.transport else None
    if transport_socket is not None:  # asyncio's TransportSocket wraps the socket
        transport_socket.setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, hub.limits.socket_send_buffer_bytes
        )
    connection = Connection(hub, socket_response, request.transport)
    if not hub.add(connection):
        refusal = websocket_pb2.ServerMessage()
        refusal.error.reason = _reason_value("CONNECTION_LIMIT_REACHED")
        refusal.error.message = "the gateway holds its maximum number of connections"
        await socket_response.send_str(to_json(refusal))
        await socket_response.close(code=websocket_pb2.CLOSE_CODE_CONNECTION_LIMIT)
        return socket_response
    writer = asyncio.create_task(connection.run_writer())
    heartbeats = asyncio.create_task(connection.run_heartbeats())
    try:
        await _read_frames(connection, socket_response, request.app[_WS_AUTHORIZER], hub)
    finally:
        connection.closed = True
        hub.remove(connection)
        writer.cancel()
        heartbeats.cancel()
        if connection.close_task is not None:
            await asyncio.wait({connection.close_task}, timeout=3)
    return socket_response


async def _read_frames(
    connection: Connection, socket_response: web.WebSocketResponse, authorizer: Authorizer, hub: Hub
) -> None:
    while not connection.closed:
        try:
            frame = await socket_response.receive(timeout=hub.limits.idle_timeout_seconds)
        except TimeoutError:
            connection.end(websocket_pb2.CLOSE_CODE_IDLE_TIMEOUT, "idle")
            return
        if frame.type == WSMsgType.TEXT:
            await connection.handle(frame.data, authorizer)
        elif frame.type == WSMsgType.BINARY:
            connection.end(websocket_pb2.CLOSE_CODE_PROTOCOL_ERROR, "text frames only")
        else:  # CLOSE, CLOSING, CLOSED, ERROR (incl. a frame above frame_bytes_max)
            return
