"""WebSocket fan-out through the real Envoy (`/ws` upgrade) to the gateway, with Redis:
a hundred clients receive every trade in order while one reader that never reads is
disconnected as a slow consumer and another has its ticker and book conflated; private
channels reach only their account; limits answer with the documented close codes."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from exchange.common.v1 import types_pb2
from exchange.websocket.v1 import websocket_pb2

from gateway.fanout import FanoutLimits, Hub
from gateway.server import running_gateway
from gateway.settings import GatewaySettings, parse_static_keys
from gateway.signing import rest_canonical, sign
from infra.local.envoy import EnvoyProxy
from infra.local.ports import free_port
from infra.local.redis import RedisServer
from tests.integration.edge.harness import (
    ALICE,
    BOB,
    STATIC_KEYS,
    GatewayProcess,
    edge_parameters,
    now_ms,
    start_envoy,
)

FAST_CLIENTS = 100
TRADES = 600
QUEUE_LIMIT = 128
TRADE_PADDING = "x" * 2000  # ~2 KB per trade: a reader that stops falls behind quickly


@dataclass
class WebSocketEdge:
    envoy: EnvoyProxy
    hub: Hub

    @property
    def url(self) -> str:
        return f"{self.envoy.base_url}/ws"


@pytest.fixture
async def ws_edge(tmp_path: Path) -> AsyncIterator[WebSocketEdge]:
    limits = FanoutLimits(
        queued_messages_max=QUEUE_LIMIT, socket_send_buffer_bytes=16 * 1024, heartbeat_seconds=60
    )
    with RedisServer() as redis:
        settings = GatewaySettings(
            static_keys=parse_static_keys(STATIC_KEYS),
            redis_url=redis.url,
            http_port=free_port(),
            grpc_port=free_port(),
            api_key_master_secret="test-master-secret",
        )
        async with running_gateway(settings, fanout_limits=limits) as gateway:
            ports = GatewayProcess(
                redis.url, http_port=gateway.http_port, grpc_port=gateway.grpc_port
            )
            parameters = edge_parameters(
                core_port=free_port(),
                gateway=ports,
                directory=tmp_path,
                access_log_path=str(tmp_path / "access.log"),
                connection_buffer_bytes=32 * 1024,
                downstream_send_buffer_bytes=32 * 1024,
            )
            envoy = await asyncio.to_thread(start_envoy, parameters, tmp_path)
            try:
                yield WebSocketEdge(envoy=envoy, hub=gateway.hub)
            finally:
                await asyncio.to_thread(envoy.stop)


class RawReader:
    """A WebSocket client on a plain socket with a tiny receive buffer that reads only when
    told to: the slowest possible consumer."""

    def __init__(self, port: int) -> None:
        self.socket = socket.socket()
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.socket.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.socket.sendall(
            (
                "GET /ws HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self.socket.recv(4096)
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, document: dict[str, Any]) -> None:
        payload = json.dumps(document).encode()
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        assert len(payload) < 126
        self.socket.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def frames(self, timeout: float = 10.0) -> list[tuple[int, bytes]]:
        """Every frame until the connection closes or is silent for `timeout` seconds."""
        self.socket.settimeout(timeout)
        frames: list[tuple[int, bytes]] = []
        while True:
            frame = self._frame()
            if frame is None:
                return frames
            frames.append(frame)
            if frame[0] == 0x8:
                return frames

    def _frame(self) -> tuple[int, bytes] | None:
        header = self._read(2)
        if header is None:
            return None
        opcode, length = header[0] & 0x0F, header[1] & 0x7F
        if length == 126:
            extended = self._read(2)
            assert extended is not None
            (length,) = struct.unpack("!H", extended)
        elif length == 127:
            extended = self._read(8)
            assert extended is not None
            (length,) = struct.unpack("!Q", extended)
        payload = self._read(length)
        return None if payload is None else (opcode, payload)

    def _read(self, count: int) -> bytes | None:
        while len(self._buffer) < count:
            try:
                chunk = self.socket.recv(65536)
            except (TimeoutError, ConnectionError):
                return None
            if not chunk:
                return None
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data


def _trade(number: int) -> websocket_pb2.ServerMessage:
    message = websocket_pb2.ServerMessage()
    trade = message.trade.trade
    trade.trade_id = f"{number}-{TRADE_PADDING}"
    trade.symbol = "BTC-USDT"
    trade.price = 2_500_000_000 + number
    trade.quantity = 1000
    trade.seq = number
    return message


def _ticker(number: int) -> websocket_pb2.ServerMessage:
    message = websocket_pb2.ServerMessage()
    message.ticker.ticker.symbol = "BTC-USDT"
    message.ticker.ticker.last = 2_500_000_000 + number
    message.ticker.ticker.trade_count = number
    return message


def _book(number: int) -> websocket_pb2.ServerMessage:
    message = websocket_pb2.ServerMessage()
    update = message.book_update
    update.symbol = "BTC-USDT"
    update.previous_seq = number - 1
    update.seq = number
    # ~40 levels (~2 KB): a reader that stops falls behind and its diffs get merged.
    update.bids.extend(
        types_pb2.PriceLevel(price=1000 + (number + level) % 200, quantity=number, order_count=1)
        for level in range(40)
    )
    return message


async def _subscribe(client: aiohttp.ClientWebSocketResponse, *channels: str) -> None:
    await client.send_json({"subscribe": {"channels": list(channels)}, "requestId": "s"})
    reply = json.loads(await client.receive_str(timeout=10))
    assert reply["subscribed"]["channels"] == list(channels), reply


async def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def _collect_trades(client: aiohttp.ClientWebSocketResponse) -> tuple[list[int], int]:
    """Trade seqs in arrival order and the last ticker's trade_count, until the last trade."""
    seqs: list[int] = []
    last_ticker = 0
    while not seqs or seqs[-1] < TRADES or last_ticker < TRADES:
        message = json.loads(await client.receive_str(timeout=30))
        if "trade" in message:
            seqs.append(int(message["trade"]["trade"]["seq"]))
        elif "ticker" in message:
            last_ticker = int(message["ticker"]["ticker"]["tradeCount"])
    return seqs, last_ticker


async def test_hundred_clients_get_every_trade_in_order_while_slow_readers_are_handled(
    ws_edge: WebSocketEdge,
) -> None:
    hub = ws_edge.hub
    async with aiohttp.ClientSession() as session:
        clients = [await session.ws_connect(ws_edge.url) for _ in range(FAST_CLIENTS)]
        for client in clients:
            await _subscribe(client, "trades:BTC-USDT", "ticker:BTC-USDT")
        port = ws_edge.envoy.listener_port
        never_reads = await asyncio.to_thread(RawReader, port)
        never_reads.send({"subscribe": {"channels": ["trades:BTC-USDT"]}})
        conflated = await asyncio.to_thread(RawReader, port)
        conflated.send({"subscribe": {"channels": ["ticker:BTC-USDT", "book:BTC-USDT"]}})
        await _wait_for(lambda: hub.connection_count == FAST_CLIENTS + 2)
        await asyncio.sleep(0.2)  # both raw subscriptions are in

        collectors = [asyncio.create_task(_collect_trades(client)) for client in clients]
        for number in range(1, TRADES + 1):
            hub.publish("trades:BTC-USDT", _trade(number))
            hub.publish("ticker:BTC-USDT", _ticker(number))
            hub.publish("book:BTC-USDT", _book(number))
            await asyncio.sleep(0.004)
        results = await asyncio.gather(*collectors)

        for seqs, last_ticker in results:
            assert seqs == list(range(1, TRADES + 1))
            assert last_ticker == TRADES
        assert hub.stats.slow_consumer_disconnects == 1
        assert hub.stats.queue_high_water <= QUEUE_LIMIT
        assert hub.connection_count == FAST_CLIENTS + 1

        # The reader that never read was cut off: its frames end in close 4000 (or the
        # connection was dropped when even the close frame could not be written).
        frames = await asyncio.to_thread(never_reads.frames, 5.0)
        trades_seen = [frame for frame in frames if frame[0] == 0x1 and b'"trade"' in frame[1]]
        assert len(trades_seen) < TRADES
        if frames and frames[-1][0] == 0x8:
            assert struct.unpack("!H", frames[-1][1][:2])[0] == 4000

        # The conflated reader was never cut off; reading now, it gets a contiguous book
        # (each diff continues from the previous seq) and the latest ticker last.
        await asyncio.sleep(0.5)
        received = await asyncio.to_thread(conflated.frames, 2.0)
        messages = [json.loads(payload) for opcode, payload in received if opcode == 0x1]
        books = [message["bookUpdate"] for message in messages if "bookUpdate" in message]
        tickers = [message["ticker"]["ticker"] for message in messages if "ticker" in message]
        assert int(books[-1]["seq"]) == TRADES
        for before, after in itertools.pairwise(books):
            assert after.get("previousSeq", "0") == before["seq"]
        assert int(tickers[-1]["tradeCount"]) == TRADES
        assert len(tickers) < TRADES  # conflated, not every update
        for client in clients:
            await client.close()


def _authenticate_frame(key: tuple[str, str, str], *, secret: str | None = None) -> dict[str, Any]:
    stamp = now_ms()
    canonical = rest_canonical(method="GET", path="/ws", timestamp_ms=str(stamp), body=b"")
    signature = sign(secret or key[1], canonical)
    return {
        "authenticate": {"apiKey": key[0], "timestampMs": str(stamp), "signature": signature},
        "requestId": "auth",
    }


async def test_private_channels_reach_only_their_account(ws_edge: WebSocketEdge) -> None:
    async with aiohttp.ClientSession() as session:
        anonymous = await session.ws_connect(ws_edge.url)
        await anonymous.send_json({"subscribe": {"channels": ["orders"]}, "requestId": "1"})
        refused = json.loads(await anonymous.receive_str(timeout=10))
        assert refused["error"]["reason"] == "ERROR_REASON_API_KEY_MISSING"

        readers = {}
        for key in (ALICE, BOB):
            client = await session.ws_connect(ws_edge.url)
            await client.send_json(_authenticate_frame(key))
            answer = json.loads(await client.receive_str(timeout=10))
            assert answer["authenticated"]["accountId"] == key[2]
            await _subscribe(client, "orders")
            readers[key[2]] = client

        update = websocket_pb2.ServerMessage()
        update.order.seq = 7
        update.order.accepted.order_id = "alice-order"
        ws_edge.hub.publish_private("orders", "acct-alice", update)
        got = json.loads(await readers["acct-alice"].receive_str(timeout=10))
        assert (got["channel"], got["order"]["accepted"]["orderId"]) == ("orders", "alice-order")
        with pytest.raises(asyncio.TimeoutError):
            await readers["acct-bob"].receive_str(timeout=0.5)

        forged = await session.ws_connect(ws_edge.url)
        await forged.send_json(_authenticate_frame(ALICE, secret="wrong"))
        error = json.loads(await forged.receive_str(timeout=10))
        assert error["error"]["reason"] == "ERROR_REASON_SIGNATURE_INVALID"
        closing = await forged.receive(timeout=10)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert closing.data == websocket_pb2.CLOSE_CODE_AUTHENTICATION_FAILED


async def test_malformed_frames_and_the_connection_cap_get_their_close_codes(
    ws_edge: WebSocketEdge,
) -> None:
    async with aiohttp.ClientSession() as session:
        client = await session.ws_connect(ws_edge.url)
        await client.send_str('{"subscribe": {"channels": ["trades:BTC-USDT"]}, "colour": 1}')
        closing = await client.receive(timeout=10)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert closing.data == websocket_pb2.CLOSE_CODE_PROTOCOL_ERROR

        unknown = await session.ws_connect(ws_edge.url)
        await unknown.send_json({"subscribe": {"channels": ["secrets:ALL"]}, "requestId": "u"})
        answer = json.loads(await unknown.receive_str(timeout=10))
        assert answer["error"]["reason"] == "ERROR_REASON_FIELD_INVALID"

        ping = await session.ws_connect(ws_edge.url)
        await ping.send_json({"ping": {}, "requestId": "p"})
        assert json.loads(await ping.receive_str(timeout=10)) == {"requestId": "p", "pong": {}}

        ws_edge.hub.limits = replace(
            ws_edge.hub.limits, connections_max=ws_edge.hub.connection_count
        )
        over = await session.ws_connect(ws_edge.url)
        refusal = json.loads(await over.receive_str(timeout=10))
        assert refusal["error"]["reason"] == "ERROR_REASON_CONNECTION_LIMIT_REACHED"
        closing = await over.receive(timeout=10)
        assert closing.data == websocket_pb2.CLOSE_CODE_CONNECTION_LIMIT
