"""``MarketDataSocket``: one WebSocket connection to the gateway's ``/ws``, kept alive.

Requests (``subscribe``/``unsubscribe``/``ping``/``authenticate``) wait for their reply,
matched by ``requestId``; an ``error`` reply raises the typed exception of its reason. Data
frames come out of ``messages()`` as ``ServerMessage`` protos, or out of ``events()`` as
typed events (exchange_sdk/_socket_events.py). It pings every ``ping_interval_seconds`` and
treats a connection that sent nothing for ``silence_timeout_seconds`` as dead; a lost
connection is replaced after a backoff (``ReconnectPolicy``), authenticated and subscribed
again. Imported as ``exchange_sdk.websocket`` (see there for the whole client).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import aiohttp
from exchange.websocket.v1 import websocket_pb2
from google.protobuf import json_format

from exchange_sdk._protocol import MarketCatalog
from exchange_sdk._socket_events import SocketEvent, to_event
from exchange_sdk.errors import ExchangeError, UnavailableError, error_reason_name, exchange_error
from exchange_sdk.signing import ApiCredentials, RequestSigner

PRIVATE_CHANNELS: Final = frozenset({"orders", "fills", "balances"})
# Close codes a new connection cannot fix (docs/api/websocket.md): authentication failed,
# protocol error (a frame of ours the gateway refused).
FINAL_CLOSE_CODES: Final = frozenset({4001, 4003})
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
