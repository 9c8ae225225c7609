"""MarketDataSocket against a tiny aiohttp WebSocket stand-in of the gateway: a connection
that goes silent past the heartbeat timeout (or is closed by the server) is replaced after a
backoff, authenticated and subscribed again, and the stream goes on; a failed
authentication (4001) is final; a policy that gives up ends messages() with the loss."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import WSCloseCode, web
from exchange_sdk.signing import ApiCredentials
from exchange_sdk.websocket import ConnectionLostError, MarketDataSocket, ReconnectPolicy

FAST = ReconnectPolicy(backoff_initial_seconds=0.01, backoff_max_seconds=0.05)


@dataclass
class StandInGateway:
    """Answers requests (a heartbeat follows each `subscribed`); connection number
    `silent_connection` goes silent after its first request (answers nothing, sends
    nothing); `close_first_with` closes the first connection after its first subscribe."""

    silent_connection: int = 0
    close_first_with: int | None = None
    refuse_authentication: bool = False
    connections: list[list[dict[str, object]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        received: list[dict[str, object]] = []
        self.connections.append(received)
        number = len(self.connections)
        async for frame in socket:
            message = json.loads(frame.data)
            received.append(message)
            if number == self.silent_connection and len(received) > 1:
                continue  # silent: no replies, no heartbeats
            reply: dict[str, object] = {"requestId": message["requestId"]}
            if "subscribe" in message:
                reply["subscribed"] = message["subscribe"]
            elif "authenticate" in message:
                if self.refuse_authentication:
                    reply["error"] = {"reason": "ERROR_REASON_SIGNATURE_INVALID"}
                    await socket.send_json(reply)
                    await socket.close(code=4001)
                    break
                reply["authenticated"] = {"accountId": "acct-alice"}
            else:
                reply["pong"] = {}
            await socket.send_json(reply)
            if "subscribe" in message:
                await socket.send_json({"heartbeat": {}})
            if number == 1 and self.close_first_with is not None and "subscribe" in message:
                await socket.close(code=self.close_first_with)
                break
        return socket


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[StandInGateway, str]]:
    stand_in = StandInGateway()
    application = web.Application()
    application.router.add_get("/ws", stand_in.handle)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield stand_in, f"ws://127.0.0.1:{port}/ws"
    finally:
        await runner.cleanup()


def _kinds(connection: list[dict[str, object]]) -> list[str]:
    return [next(key for key in message if key != "requestId") for message in connection]


async def _until(condition: object, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_silence_past_the_heartbeat_timeout_reconnects_and_restores(
    gateway: tuple[StandInGateway, str],
) -> None:
    stand_in, url = gateway
    stand_in.silent_connection = 1
    losses: list[ConnectionLostError] = []
    async with MarketDataSocket(
        url,
        credentials=ApiCredentials("alice", "secret"),
        silence_timeout_seconds=0.3,
        ping_interval_seconds=0.05,
        reconnect=FAST,
    ) as socket:
        socket.add_connection_lost_listener(losses.append)
        await socket.authenticate()
        # From here the first connection is silent: the subscribe reply never comes.
        with pytest.raises(ConnectionLostError):
            await socket.subscribe("trades:BTC-USDT", "orders")
        await _until(lambda: socket.reconnects == 1)
        await socket.subscribe("trades:BTC-USDT", "orders")
        frame = await anext(socket.messages())
        assert frame.WhichOneof("message") == "heartbeat"
    assert [loss.close_code for loss in losses] == [None]
    assert _kinds(stand_in.connections[1])[:1] == ["authenticate"]  # authenticated again


async def test_a_closed_connection_is_replaced_with_its_channels(
    gateway: tuple[StandInGateway, str],
) -> None:
    stand_in, url = gateway
    stand_in.close_first_with = WSCloseCode.GOING_AWAY
    async with MarketDataSocket(url, reconnect=FAST) as socket:
        await socket.subscribe("trades:BTC-USDT", "book:BTC-USDT")
        await _until(lambda: len(stand_in.connections) == 2 and stand_in.connections[1])
        second = stand_in.connections[1][0]
        assert second["subscribe"] == {"channels": ["book:BTC-USDT", "trades:BTC-USDT"]}
        assert socket.reconnects == 1


async def test_a_failed_authentication_is_final(gateway: tuple[StandInGateway, str]) -> None:
    stand_in, url = gateway
    stand_in.refuse_authentication = True
    async with MarketDataSocket(
        url, credentials=ApiCredentials("alice", "wrong"), reconnect=FAST
    ) as socket:
        with pytest.raises(Exception, match="SIGNATURE_INVALID"):
            await socket.authenticate()
        with pytest.raises(ConnectionLostError) as lost:
            await anext(socket.messages())
        assert lost.value.close_code == 4001
        assert socket.reconnects == 0


async def test_a_policy_that_gives_up_ends_the_stream(gateway: tuple[StandInGateway, str]) -> None:
    stand_in, url = gateway
    stand_in.close_first_with = WSCloseCode.GOING_AWAY
    policy = ReconnectPolicy(attempts_max=2, backoff_initial_seconds=0.01)
    async with MarketDataSocket(url, reconnect=policy) as socket:
        await socket.subscribe("trades:BTC-USDT")
        # Every reconnection is refused from now on: the stand-in is gone.
        socket.url = url.replace("/ws", "/nowhere")
        with pytest.raises(ConnectionLostError):
            await asyncio.wait_for(_drain(socket), 5)
        assert socket.reconnects == 0


async def _drain(socket: MarketDataSocket) -> None:
    async for _message in socket.messages():
        pass
