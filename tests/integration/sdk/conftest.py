"""The real edge for the SDK's tests, once per module: the trading core (`python -m
core.service`, WAL on disk) with the local exchange's markets (BTC-USDT, ETH-USDT) and
funded static-key traders, the gateway process with Redis, and Envoy in front."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from exchange_sdk import Client, MarketSpec
from grpc import aio

from core.service.testing import ServerProcess, deposit
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


@dataclass(frozen=True)
class SdkEdge:
    edge: Edge
    core_address: str

    @property
    def endpoint(self) -> str:
        """Envoy's listener (native gRPC and REST)."""
        return self.edge.grpc_target

    @property
    def base_url(self) -> str:
        return self.edge.envoy.base_url

    def client(self, key: tuple[str, str, str] = ALICE, **options: object) -> Client:
        return Client(
            self.endpoint,
            api_key=key[0],
            api_secret=key[1],
            markets=MARKET_SPECS,
            **options,  # type: ignore[arg-type]
        )


async def _fund(core_address: str) -> None:
    async with aio.insecure_channel(core_address) as channel:
        for account in (ALICE[2], BOB[2], READER[2], CAROL[2]):
            for asset, amount in FUNDS:
                await deposit(channel, account, asset, amount)


@pytest.fixture(scope="module")
def sdk_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkEdge]:
    directory: Path = tmp_path_factory.mktemp("sdk-edge")
    with (
        ServerProcess(directory / "core") as core,
        RedisServer() as redis,
        (directory / "gateway.log").open("wb") as gateway_log,
    ):
        list_reference_data(core.address)
        asyncio.run(_fund(core.address))
        gateway = GatewayProcess(
            redis_url=redis.url, log=gateway_log, environment={"EDGE_API_SECRETS": KEYS}
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
            yield SdkEdge(Edge(envoy=envoy, gateway=gateway, redis=redis), core.address)
        finally:
            envoy.stop()
            gateway.stop()
