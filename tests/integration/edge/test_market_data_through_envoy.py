"""Market data through the real Envoy, from the real core's event log: the core
(`python -m core.service --broker`) publishes to Tansu, the gateway process projects
`core.events.v1` and serves MarketDataService (REST through Envoy's transcoder) and the
WebSocket channels; tickers come from Redis and candles from a stand-in history server
(the real one lives in streaming/), written here the way streaming/ writes them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from exchange.events.v1 import envelope_pb2
from exchange.marketdata.v1 import marketdata_pb2, marketdata_pb2_grpc
from exchange.marketdata.v1 import types_pb2 as marketdata_types_pb2
from grpc import aio

from common.topics import TopicSpec, ensure_topics
from core.service.testing import ServerProcess, create_btc_usdt, deposit
from gateway.signing import rest_canonical, sign
from infra.local.kafka_broker import LocalBroker
from infra.local.ports import free_port
from infra.local.redis import RedisServer
from tests.integration.edge.harness import (
    ALICE,
    BOB,
    READER,
    Edge,
    GatewayProcess,
    Response,
    edge_parameters,
    now_ms,
    start_envoy,
)

USDT = 1_000_000
BTC = 100_000_000
PRICE = 50_000 * USDT
QUANTITY = BTC // 100  # 0.01 BTC
SYMBOL = "BTC-USDT"


class StandInHistory(marketdata_pb2_grpc.MarketDataServiceServicer):
    """What streaming/'s history server answers, reduced to ListCandles."""

    def __init__(self) -> None:
        self.requests: list[marketdata_pb2.ListCandlesRequest] = []

    async def ListCandles(  # noqa: N802
        self, request: marketdata_pb2.ListCandlesRequest, context: object
    ) -> marketdata_pb2.ListCandlesResponse:
        self.requests.append(request)
        candle = marketdata_types_pb2.Candle(
            symbol=request.symbol,
            interval=request.interval or marketdata_types_pb2.CANDLE_INTERVAL_1M,
            open=PRICE,
            high=PRICE,
            low=PRICE,
            close=PRICE,
            volume=QUANTITY,
            trade_count=1,
        )
        return marketdata_pb2.ListCandlesResponse(candles=[candle])


@dataclass
class MarketEdge:
    edge: Edge
    broker: LocalBroker
    core: ServerProcess
    history: aio.Server
    history_service: StandInHistory

    async def get(self, path: str) -> Response:
        return await asyncio.to_thread(self.edge.request, "GET", path)

    async def signed(self, method: str, path: str, **kwargs: Any) -> Response:
        return await asyncio.to_thread(self.edge.signed, method, path, **kwargs)

    @property
    def ws_url(self) -> str:
        return f"{self.edge.envoy.base_url}/ws"


async def _prepare(address: str) -> None:
    async with aio.insecure_channel(address) as channel:
        await create_btc_usdt(channel)
        await deposit(channel, ALICE[2], "USDT", 10_000 * USDT)
        await deposit(channel, BOB[2], "BTC", 1 * BTC)


@pytest.fixture
async def market_edge(tmp_path: Path) -> AsyncIterator[MarketEdge]:
    history = aio.server()
    history_service = StandInHistory()  # type: ignore[abstract]  # ListCandles only
    marketdata_pb2_grpc.add_MarketDataServiceServicer_to_server(history_service, history)
    history_port = history.add_insecure_port("127.0.0.1:0")
    await history.start()
    core_port = free_port()
    with (
        LocalBroker() as broker,
        RedisServer() as redis,
        (tmp_path / "gateway.log").open("wb") as gateway_log,
    ):
        core = ServerProcess(
            tmp_path / "core",
            "--listen",
            f"127.0.0.1:{core_port}",
            "--broker",
            broker.bootstrap_servers,
        )
        try:
            await _prepare(core.address)
            gateway = GatewayProcess(
                redis_url=redis.url,
                log=gateway_log,
                environment={
                    "EDGE_BROKER": broker.bootstrap_servers,
                    "EDGE_MARKET_HISTORY_ADDRESS": f"127.0.0.1:{history_port}",
                },
            )
            await asyncio.to_thread(gateway.start)
            parameters = edge_parameters(
                core_port=core_port,
                gateway=gateway,
                directory=tmp_path,
                access_log_path=str(tmp_path / "access.log"),
                health_check_interval_ms=300,
            )
            envoy = await asyncio.to_thread(start_envoy, parameters, tmp_path)
            try:
                yield MarketEdge(
                    Edge(envoy=envoy, gateway=gateway, redis=redis),
                    broker,
                    core,
                    history,
                    history_service,
                )
            finally:
                await asyncio.to_thread(envoy.stop)
                await asyncio.to_thread(gateway.stop)
        finally:
            core.stop()
            await history.stop(grace=None)


async def _until(
    probe: Callable[[], Any], *, seconds: float = 20.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            message = f"timed out waiting for {what}"
            raise TimeoutError(message)
        await asyncio.sleep(0.1)


async def _receive(
    socket: aiohttp.ClientWebSocketResponse, seconds: float = 10.0
) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(await socket.receive_str(timeout=seconds))
    return document


async def _drain(socket: aiohttp.ClientWebSocketResponse, seconds: float) -> list[dict[str, Any]]:
    """Every message until the socket is quiet for `seconds`."""
    messages = []
    while True:
        try:
            messages.append(await _receive(socket, seconds))
        except TimeoutError:
            return messages


async def _authenticated(
    session: aiohttp.ClientSession, url: str, key: tuple[str, str, str], channels: list[str]
) -> aiohttp.ClientWebSocketResponse:
    socket = await session.ws_connect(url)
    stamp = now_ms()
    signature = sign(
        key[1], rest_canonical(method="GET", path="/ws", timestamp_ms=str(stamp), body=b"")
    )
    await socket.send_json(
        {"authenticate": {"apiKey": key[0], "timestampMs": str(stamp), "signature": signature}}
    )
    assert (await _receive(socket))["authenticated"]["accountId"] == key[2]
    await socket.send_json({"subscribe": {"channels": channels}})
    assert (await _receive(socket))["subscribed"]["channels"] == channels
    return socket


def _order(client_order_id: str, side: str, quantity: int) -> dict[str, object]:
    return {
        "client_order_id": client_order_id,
        "symbol": SYMBOL,
        "side": side,
        "order_type": "ORDER_TYPE_LIMIT",
        "price": str(PRICE),
        "quantity": str(quantity),
    }


def _apply(levels: dict[int, tuple[int, int]], changes: list[dict[str, str]]) -> None:
    for level in changes:
        price, quantity = int(level["price"]), int(level.get("quantity", "0"))
        if quantity:
            levels[price] = (quantity, int(level.get("orderCount", 0)))
        else:
            levels.pop(price, None)


async def test_orders_become_book_trades_and_private_updates_through_envoy(
    market_edge: MarketEdge,
) -> None:
    listed = await _until(
        lambda: _ok(market_edge.get(f"/v1/markets/{SYMBOL}")), what="the market in the projection"
    )
    assert listed.json()["market"]["base_asset"] == "BTC"
    assets = (await market_edge.get("/v1/assets")).json()["assets"]
    assert {asset["asset"]: asset["scale"] for asset in assets} == {"BTC": 8, "USDT": 6}
    unknown = await market_edge.get("/v1/markets/DOGE-USDT/orderbook")
    assert (unknown.status, unknown.reason) == (404, "SYMBOL_UNKNOWN")
    too_deep = await market_edge.get(f"/v1/markets/{SYMBOL}/orderbook?depth=5000")
    assert (too_deep.status, too_deep.reason) == (400, "FIELD_INVALID")

    async with aiohttp.ClientSession() as session:
        public = await session.ws_connect(market_edge.ws_url)
        await public.send_json({"subscribe": {"channels": [f"book:{SYMBOL}", f"trades:{SYMBOL}"]}})
        assert "subscribed" in await _receive(public)
        snapshot = (await _receive(public))["bookSnapshot"]["book"]
        snapshot_seq = int(snapshot["seq"])
        assert snapshot_seq >= 1  # MarketCreated at least
        alice = await _authenticated(
            session, market_edge.ws_url, ALICE, ["orders", "fills", "balances"]
        )
        bob = await _authenticated(session, market_edge.ws_url, BOB, ["fills"])
        reader = await _authenticated(
            session, market_edge.ws_url, READER, ["orders", "fills", "balances"]
        )

        sold = await market_edge.signed(
            "POST",
            "/v1/orders",
            key=BOB,
            body=_order("bob-1", "SIDE_SELL", QUANTITY),
            idempotency_key="bob-1",
        )
        assert sold.status == 200, sold.body
        bought = await market_edge.signed(
            "POST",
            "/v1/orders",
            key=ALICE,
            body=_order("alice-1", "SIDE_BUY", 2 * QUANTITY),
            idempotency_key="alice-1",
        )
        assert bought.status == 200, bought.body
        alice_order_id = bought.json()["order"]["order_id"]

        # REST: the book shows Alice's remainder (her bid rests after taking Bob's ask).
        async def book_settled() -> dict[str, Any] | None:
            book = (await market_edge.get(f"/v1/markets/{SYMBOL}/orderbook")).json()["book"]
            return book if book.get("bids") and not book.get("asks") else None

        book = await _until(book_settled, what="the crossed orders in the book")
        assert book["bids"] == [{"price": str(PRICE), "quantity": str(QUANTITY), "order_count": 1}]
        book_seq = int(book["seq"])
        assert book_seq > snapshot_seq
        trades = (await market_edge.get(f"/v1/markets/{SYMBOL}/trades")).json()["trades"]
        assert len(trades) == 1
        assert (trades[0]["price"], trades[0]["quantity"], trades[0]["taker_side"]) == (
            str(PRICE),
            str(QUANTITY),
            "SIDE_BUY",
        )

        # WebSocket, public: diffs chain from the snapshot and rebuild the REST book; the trade.
        messages = await _drain(public, 1.5)
        levels: dict[str, dict[int, tuple[int, int]]] = {"bids": {}, "asks": {}}
        last_seq = snapshot_seq
        for message in messages:
            if "bookUpdate" in message:
                diff = message["bookUpdate"]
                assert int(diff.get("previousSeq", 0)) == last_seq
                last_seq = int(diff["seq"])
                _apply(levels["bids"], diff.get("bids", []))
                _apply(levels["asks"], diff.get("asks", []))
        assert last_seq == book_seq
        assert levels == {"bids": {PRICE: (QUANTITY, 1)}, "asks": {}}
        public_trades = [message["trade"]["trade"] for message in messages if "trade" in message]
        assert [trade["tradeId"] for trade in public_trades] == [trades[0]["trade_id"]]

        # WebSocket, private: each account its own fill, the reader nothing at all.
        alice_messages = await _drain(alice, 1.0)
        alice_fills = [message["fill"] for message in alice_messages if "fill" in message]
        assert len(alice_fills) == 1
        assert alice_fills[0]["orderId"] == alice_order_id
        assert alice_fills[0]["clientOrderId"] == "alice-1"
        assert (alice_fills[0]["side"], alice_fills[0]["liquidity"]) == (
            "SIDE_BUY",
            "LIQUIDITY_TAKER",
        )
        assert alice_fills[0]["remainingQuantity"] == str(QUANTITY)
        assert any("accepted" in message.get("order", {}) for message in alice_messages)
        alice_balances = [
            message["balance"]["balance"] for message in alice_messages if "balance" in message
        ]
        assert {balance["asset"] for balance in alice_balances} == {"USDT", "BTC"}
        bob_fills = [message["fill"] for message in await _drain(bob, 0.5) if "fill" in message]
        assert len(bob_fills) == 1
        assert (bob_fills[0]["side"], bob_fills[0]["liquidity"]) == ("SIDE_SELL", "LIQUIDITY_MAKER")
        assert bob_fills[0]["clientOrderId"] == "bob-1"
        assert await _drain(reader, 0.5) == []

        # Ticker from Redis (streaming/'s key) with the best bid/ask of the projected book.
        ticker = marketdata_types_pb2.Ticker(
            symbol=SYMBOL, last=PRICE, volume=QUANTITY, trade_count=1
        )
        redis = market_edge.edge.redis
        await asyncio.to_thread(
            _redis_set, redis.url, f"md:ticker:{SYMBOL}", ticker.SerializeToString()
        )
        answered = (await market_edge.get(f"/v1/markets/{SYMBOL}/ticker")).json()["ticker"]
        assert (answered["last"], answered["trade_count"]) == (str(PRICE), "1")
        assert (answered["best_bid"], answered.get("best_ask", "0")) == (str(PRICE), "0")
        tickers = (await market_edge.get("/v1/tickers")).json()["tickers"]
        assert [one["symbol"] for one in tickers] == [SYMBOL]
        missing = await market_edge.get("/v1/markets/ETH-USDT/ticker")
        assert (missing.status, missing.reason) == (404, "SYMBOL_UNKNOWN")

        # Candles and tickers on the WebSocket from streaming/'s topics.
        watcher = await session.ws_connect(market_edge.ws_url)
        await watcher.send_json(
            {"subscribe": {"channels": [f"ticker:{SYMBOL}", f"candles:{SYMBOL}:1m"]}}
        )
        assert "subscribed" in await _receive(watcher)
        await _publish_market_data(market_edge.broker.bootstrap_servers, ticker)
        streamed = await _drain(watcher, 3.0)
        kinds = {next(iter(set(message) - {"channel"})) for message in streamed}
        assert kinds == {"ticker", "candle"}, streamed
        streamed_ticker = next(
            message["ticker"]["ticker"] for message in streamed if "ticker" in message
        )
        assert streamed_ticker["bestBid"] == str(PRICE)
        for socket in (public, alice, bob, reader, watcher):
            await socket.close()

    # Candles are forwarded to the history service; without it, a named UNAVAILABLE.
    candles = await market_edge.get(
        f"/v1/markets/{SYMBOL}/candles?interval=CANDLE_INTERVAL_1H&limit=10"
    )
    assert candles.status == 200, candles.body
    assert candles.json()["candles"][0]["interval"] == "CANDLE_INTERVAL_1H"
    assert market_edge.history_service.requests[-1].limit == 10
    await market_edge.history.stop(grace=None)
    gone = await market_edge.get(f"/v1/markets/{SYMBOL}/candles")
    assert (gone.status, gone.reason) == (503, "DEPENDENCY_UNAVAILABLE")

    # /readyz follows the upstreams' health checks: ready now, not ready without the core.
    ready = await _until(lambda: _status_is(market_edge.get("/readyz"), 200), what="/readyz 200")
    assert ready
    await asyncio.to_thread(market_edge.core.stop)
    assert await _until(lambda: _status_is(market_edge.get("/readyz"), 503), what="/readyz 503")
    healthy = await market_edge.get("/healthz")
    assert healthy.status == 200  # liveness is Envoy's own


async def _ok(pending: Any) -> Response | None:
    response: Response = await pending
    return response if response.status == 200 else None


async def _status_is(pending: Any, status: int) -> bool:
    response: Response = await pending
    return response.status == status


def _redis_set(url: str, key: str, value: bytes) -> None:
    import redis  # noqa: PLC0415 - the sync client, used only here

    client = redis.Redis.from_url(url)
    try:
        client.set(key, value)
    finally:
        client.close()


async def _publish_market_data(bootstrap_servers: str, ticker: marketdata_types_pb2.Ticker) -> None:
    """One TickerUpdated and one CandleUpdated, as streaming/ publishes them."""
    await ensure_topics(
        bootstrap_servers,
        [TopicSpec(name="md.tickers.v1"), TopicSpec(name="md.candles.v1")],
        request_timeout_ms=5000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        ticker_event = envelope_pb2.EventEnvelope(
            event_id="md:ticker:1", symbol=SYMBOL, producer=envelope_pb2.PRODUCER_MARKET_DATA
        )
        ticker_event.ticker_updated.ticker.CopyFrom(ticker)
        candle_event = envelope_pb2.EventEnvelope(
            event_id="md:candle:1", symbol=SYMBOL, producer=envelope_pb2.PRODUCER_MARKET_DATA
        )
        candle = candle_event.candle_updated.candle
        candle.symbol = SYMBOL
        candle.interval = marketdata_types_pb2.CANDLE_INTERVAL_1M
        candle.close = PRICE
        await producer.send_and_wait(
            "md.tickers.v1", ticker_event.SerializeToString(), key=SYMBOL.encode()
        )
        await producer.send_and_wait(
            "md.candles.v1", candle_event.SerializeToString(), key=SYMBOL.encode()
        )
    finally:
        await producer.stop()
