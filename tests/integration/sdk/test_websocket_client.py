"""The WebSocket client through the real Envoy to the gateway: subscribe, unsubscribe and
ping get their replies, authenticate with the SDK's signature opens the private channels,
and refusals arrive as typed errors with their reasons."""

from __future__ import annotations

import pytest
from exchange_sdk import AuthenticationError, InvalidRequestError
from exchange_sdk.signing import ApiCredentials
from exchange_sdk.websocket import ConnectionLostError, MarketDataSocket

from tests.integration.edge.harness import ALICE
from tests.integration.sdk.conftest import SdkEdge


async def test_subscribe_ping_authenticate_and_private_channels(sdk_edge: SdkEdge) -> None:
    url = sdk_edge.base_url.replace("http://", "ws://") + "/ws"
    credentials = ApiCredentials(ALICE[0], ALICE[1])
    async with MarketDataSocket(url, credentials=credentials) as socket:
        assert await socket.subscribe("trades:BTC-USDT", "book:BTC-USDT") == (
            "trades:BTC-USDT",
            "book:BTC-USDT",
        )
        await socket.ping()
        with pytest.raises(AuthenticationError) as before:
            await socket.subscribe("orders")
        assert before.value.reason == "API_KEY_MISSING"
        with pytest.raises(InvalidRequestError) as unknown:
            await socket.subscribe("weather:BTC-USDT")
        assert unknown.value.reason == "FIELD_INVALID"
        assert await socket.authenticate() == ALICE[2]
        assert await socket.subscribe("orders", "fills", "balances") == (
            "orders",
            "fills",
            "balances",
        )
        assert await socket.unsubscribe("book:BTC-USDT") == ("book:BTC-USDT",)
        assert socket.channels == {"trades:BTC-USDT", "orders", "fills", "balances"}


async def test_a_bad_signature_is_refused_and_closes_4001(sdk_edge: SdkEdge) -> None:
    url = sdk_edge.base_url.replace("http://", "ws://") + "/ws"
    forged = ApiCredentials(ALICE[0], "not-the-secret")
    async with MarketDataSocket(url, credentials=forged) as socket:
        with pytest.raises(AuthenticationError) as refused:
            await socket.authenticate()
        assert refused.value.reason == "SIGNATURE_INVALID"
        with pytest.raises(ConnectionLostError) as closed:
            await anext(socket.messages())
        assert closed.value.close_code == 4001
