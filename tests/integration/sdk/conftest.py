"""The real edge for the SDK's tests, once per module: the trading core (`python -m
core.service --broker`, WAL on disk, publishing `core.events.v1` to a real Tansu broker)
with the local exchange's markets (BTC-USDT, ETH-USDT) and funded static-key traders, the
gateway process (Redis; EDGE_BROKER: its MarketDataService and WebSocket channels project
the core's event log; EDGE_MARKET_HISTORY_ADDRESS: a stand-in of streaming/'s history
server answering ListCandles), and Envoy in front."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from exchange.marketdata.v1 import marketdata_pb2, marketdata_pb2_grpc
from exchange.marketdata.v1 import types_pb2 as marketdata_types_pb2
from exchange_sdk import Client, MarketSpec
from grpc import aio

from core.service.testing import ServerProcess, deposit
from infra.local.kafka_broker import LocalBroker
from infra.local.redis import RedisServer
from infra.local.reference_data import MARKETS, list_reference_data
from tests.integration.edge.harness import (
    ALICE,
    BOB,
    READER,
    STATIC_KEYS,
    Edge,
    GatewayProcess,
    edge_parameters,
    start_envoy,
)

# Whole units: 1,000,000 USDT, 10 BTC, 100 ETH for each trader.
FUNDS = (("USDT", 1_000_000 * 10**6), ("BTC", 10 * 10**8), ("ETH", 100 * 10**8))
MARKET_SPECS = tuple(MarketSpec.from_proto(market) for market in MARKETS)
# A trader who may also withdraw (the harness's static keys trade only).
CAROL = ("carol", "carol-secret", "acct-carol")
KEYS = f"{STATIC_KEYS},{CAROL[0]}:{CAROL[1]}:{CAROL[2]}:READ+TRADE+WITHDRAW"
PROJECTION_WAIT_SECONDS = 20.0
ValueT = TypeVar("ValueT")


class StandInHistory(marketdata_pb2_grpc.MarketDataServiceServicer):
    """What streaming/'s history server answers, reduced to ListCandles: one candle of the
    asked interval per call, closing at `close` (minor units)."""

    def __init__(self) -> None:
        self.requests: list[marketdata_pb2.ListCandlesRequest] = []

    def ListCandles(  # noqa: N802 - the generated servicer's method name
        self, request: marketdata_pb2.ListCandlesRequest, context: grpc.ServicerContext
    ) -> marketdata_pb2.ListCandlesResponse:
        self.requests.append(request)
        price = 50_000 * 10**6
        candle = marketdata_types_pb2.Candle(
            symbol=request.symbol,
            interval=request.interval or marketdata_types_pb2.CANDLE_INTERVAL_1M,
            open=price,
            high=price + 10**6,
            low=price - 10**6,
            close=price,
            volume=10**6,
            quote_volume=500 * 10**6,
            trade_count=3,
        )
        candle.open_time.FromSeconds(1_700_000_000)
        return marketdata_pb2.ListCandlesResponse(candles=[candle])


@dataclass(frozen=True)
class SdkEdge:
    edge: Edge
    core_address: str
    history: StandInHistory = field(default_factory=StandInHistory)

    @property
    def endpoint(self) -> str:
        """Envoy's listener (native gRPC and REST)."""
        return self.edge.grpc_target

    @property
    def base_url(self) -> str:
        return self.edge.envoy.base_url

    @property
    def websocket_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws"

    def client(self, key: tuple[str, str, str] = ALICE, **options: object) -> Client:
        """A client seeded with the market specs (no lookups)."""
        return Client(
            self.endpoint,
            api_key=key[0],
            api_secret=key[1],
            markets=MARKET_SPECS,
            **options,  # type: ignore[arg-type]
        )

    def unseeded_client(self, key: tuple[str, str, str] = ALICE) -> Client:
        """A client that looks market specs and asset scales up through MarketDataService."""
        return Client(self.endpoint, api_key=key[0], api_secret=key[1])

    def set_ticker(self, ticker: marketdata_types_pb2.Ticker) -> None:
        """Stores a ticker the way streaming/ does: Redis `md:ticker:{SYMBOL}`, Ticker bytes."""
        import redis  # noqa: PLC0415 - the sync client, used only by tests

        client = redis.Redis.from_url(self.edge.redis.url)
        try:
            client.set(f"md:ticker:{ticker.symbol}", ticker.SerializeToString())
        finally:
            client.close()


def until(
    probe: Callable[[], ValueT | None],
    *,
    seconds: float = PROJECTION_WAIT_SECONDS,
    what: str = "a condition",
) -> ValueT:
    """Polls `probe` until it returns something truthy (the projection is asynchronous)."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            message = f"timed out waiting for {what}"
            raise TimeoutError(message)
        time.sleep(0.05)


async def _fund(core_address: str) -> None:
    async with aio.insecure_channel(core_address) as channel:
        for account in (ALICE[2], BOB[2], READER[2], CAROL[2]):
            for asset, amount in FUNDS:
                await deposit(channel, account, asset, amount)


def _markets_projected(edge: SdkEdge) -> bool:
    with Client(edge.endpoint) as client:
        return {market.symbol for market in client.list_markets()} == {
            market.symbol for market in MARKETS
        }


@pytest.fixture(scope="module")
def sdk_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkEdge]:
    directory: Path = tmp_path_factory.mktemp("sdk-edge")
    history_service = StandInHistory()  # type: ignore[abstract]  # ListCandles only
    history = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    marketdata_pb2_grpc.add_MarketDataServiceServicer_to_server(history_service, history)
    history_port = history.add_insecure_port("127.0.0.1:0")
    history.start()
    with (
        LocalBroker() as broker,
        ServerProcess(directory / "core", "--broker", broker.bootstrap_servers) as core,
        RedisServer() as redis,
        (directory / "gateway.log").open("wb") as gateway_log,
    ):
        list_reference_data(core.address)
        asyncio.run(_fund(core.address))
        gateway = GatewayProcess(
            redis_url=redis.url,
            log=gateway_log,
            environment={
                "EDGE_API_SECRETS": KEYS,
                "EDGE_BROKER": broker.bootstrap_servers,
                "EDGE_MARKET_HISTORY_ADDRESS": f"127.0.0.1:{history_port}",
            },
        )
        gateway.start()
        core_port = int(core.address.rsplit(":", 1)[1])
        parameters = edge_parameters(
            core_port=core_port,
            gateway=gateway,
            directory=directory,
            access_log_path=str(directory / "access.log"),
        )
        envoy = start_envoy(parameters, directory)
        try:
            edge = SdkEdge(
                Edge(envoy=envoy, gateway=gateway, redis=redis), core.address, history_service
            )
            until(lambda: _markets_projected(edge), what="the markets in the gateway's projection")
            yield edge
        finally:
            envoy.stop()
            gateway.stop()
            history.stop(grace=None)
