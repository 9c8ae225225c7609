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

The connection is exchange_sdk/_market_data_socket.py, the typed events
exchange_sdk/_socket_events.py and the book feed exchange_sdk/_book_feed.py; this module is
their one import path.
"""

from __future__ import annotations

from exchange_sdk._book_feed import SNAPSHOT_DEPTH, BookFeed, SnapshotSource, rest_snapshot_source
from exchange_sdk._market_data_socket import (
    FINAL_CLOSE_CODES,
    NO_RECONNECT,
    PRIVATE_CHANNELS,
    ConnectionLostError,
    MarketDataSocket,
    ReconnectPolicy,
    client_frame,
    parse_server_message,
    socket_error,
)
from exchange_sdk._socket_events import (
    BalanceEvent,
    CandleEvent,
    FillEvent,
    OrderEvent,
    RawEvent,
    SocketEvent,
    TickerEvent,
    TradeEvent,
    to_event,
)

__all__ = [
    "FINAL_CLOSE_CODES",
    "NO_RECONNECT",
    "PRIVATE_CHANNELS",
    "SNAPSHOT_DEPTH",
    "BalanceEvent",
    "BookFeed",
    "CandleEvent",
    "ConnectionLostError",
    "FillEvent",
    "MarketDataSocket",
    "OrderEvent",
    "RawEvent",
    "ReconnectPolicy",
    "SnapshotSource",
    "SocketEvent",
    "TickerEvent",
    "TradeEvent",
    "client_frame",
    "parse_server_message",
    "rest_snapshot_source",
    "socket_error",
    "to_event",
]
