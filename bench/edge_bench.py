"""Edge benchmark against the REAL core: orders per second through Envoy (signed REST,
signed native gRPC) beside native gRPC unary straight to the same core, in the same run,
with the ratio; then the WebSocket fan-out fed by the real event path.

Run: .venv/bin/python bench/edge_bench.py [--seconds 5] [--concurrency 32]
                                          [--websocket-clients 200] [--websocket-rate 50]

What runs (all real processes on loopback): Tansu, the trading core (`python -m
core.service --broker`, WAL with fsync, outbox publishing to Tansu), redis-server, the
gateway (`python -m gateway` with EDGE_BROKER: it projects the core's events while the
orders flow, as in production), and Envoy rendered by gateway/envoy_config.py. Every order
is a resting LIMIT buy of BTC-USDT (no trade), so each phase measures one accepted order
per call. Each REST order is signed (X-API-KEY, X-TS, X-SIGNATURE), carries its own
Idempotency-Key and client_order_id, and so passes every check: key lookup, replay mark,
rate-limit window, REST body validation and the idempotency binding (the rate limit is
raised so the bench measures the path, not the limit). Prints orders/s and p50/p99 latency
per phase and the ratio of each edge phase to direct gRPC.

Then the WebSocket fan-out from the real event path: N clients through Envoy's `/ws`
subscribed to `trades:BTC-USDT`; a driver sends sells straight to the core at a fixed
rate, each of which trades with one of the resting buys; each trade goes core -> outbox
-> Tansu -> the gateway's projection -> hub -> Envoy -> every client. Prints messages/s
delivered and the p50/p99 delay from the trade's `executed_at` (the core's clock at
sequencing; same machine) to a client's receipt.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc

from common.identity_headers import ACCOUNT_HEADER
from core.service.testing import ServerProcess, create_btc_usdt, deposit
from gateway.signing import grpc_metadata, rest_headers
from infra.local.envoy import EnvoyProxy
from infra.local.kafka_broker import LocalBroker
from infra.local.ports import free_port
from infra.local.redis import RedisServer
from tests.integration.edge.harness import (
    ALICE,
    BOB,
    GatewayProcess,
    edge_parameters,
    now_ms,
    start_envoy,
)

PLACE_PATH = "/exchange.trading.v1.TradingService/PlaceOrder"
PRICE = 50_000_000_000  # 50,000 USDT per BTC (quote minor units; the market reference)
QUANTITY = 10_000  # 0.0001 BTC (base minor units; one lot)
CORE_ARGUMENTS = ("--open-orders-max-per-account", "10000000", "--log-level", "WARNING")


@dataclass(frozen=True)
class PhaseResult:
    name: str
    orders: int
    elapsed_seconds: float
    latencies_ms: list[float]

    @property
    def orders_per_second(self) -> float:
        return self.orders / self.elapsed_seconds

    def line(self) -> str:
        p50, p99 = _percentiles(self.latencies_ms)
        return (
            f"{self.name:<34} {self.orders_per_second:>9.0f} orders/s"
            f"   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   ({self.orders} orders)"
        )


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def _run_phase(
    name: str, *, seconds: float, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> PhaseResult:
    counter = itertools.count()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await one(next(counter))
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return PhaseResult(name, len(latencies), time.perf_counter() - started, latencies)


def _order(number: int, prefix: str, side: int = 1) -> trading_pb2.PlaceOrderRequest:
    return trading_pb2.PlaceOrderRequest(
        client_order_id=f"{prefix}-{number}",
        symbol="BTC-USDT",
        side=side,  # type: ignore[arg-type]  # 1 SIDE_BUY, 2 SIDE_SELL
        order_type=1,  # type: ignore[arg-type]  # ORDER_TYPE_LIMIT
        price=PRICE,
        quantity=QUANTITY,
    )


@dataclass
class RealEdge:
    core_target: str
    envoy: EnvoyProxy


async def _prepare_core(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await create_btc_usdt(channel)
        await deposit(channel, ALICE[2], "USDT", 10**15)
        await deposit(channel, BOB[2], "BTC", 10**15)


async def bench(arguments: argparse.Namespace) -> tuple[list[PhaseResult], str]:
    with (
        tempfile.TemporaryDirectory() as temporary,
        LocalBroker() as broker,
        RedisServer() as redis,
    ):
        directory = Path(temporary)
        core_port = free_port()
        with ServerProcess(
            directory / "core",
            "--listen",
            f"127.0.0.1:{core_port}",
            "--broker",
            broker.bootstrap_servers,
            *CORE_ARGUMENTS,
        ) as core:
            await _prepare_core(core.address)
            gateway = GatewayProcess(
                redis_url=redis.url,
                environment={
                    "EDGE_RATE_LIMIT_PER_MINUTE": "100000000",
                    "EDGE_BROKER": broker.bootstrap_servers,
                },
            )
            await asyncio.to_thread(gateway.start)
            parameters = edge_parameters(
                core_port=core_port,
                gateway=gateway,
                directory=directory,
                access_log_path="/dev/null",
            )
            envoy = await asyncio.to_thread(start_envoy, parameters, directory)
            try:
                edge = RealEdge(core_target=core.address, envoy=envoy)
                results = await _phases(
                    edge, seconds=arguments.seconds, concurrency=arguments.concurrency
                )
                fan_out = await _fan_out(
                    edge,
                    seconds=arguments.seconds,
                    clients=arguments.websocket_clients,
                    rate=arguments.websocket_rate,
                )
                return results, fan_out
            finally:
                await asyncio.to_thread(envoy.stop)
                await asyncio.to_thread(gateway.stop)


async def _phases(edge: RealEdge, *, seconds: float, concurrency: int) -> list[PhaseResult]:
    results = []
    envoy_target = f"127.0.0.1:{edge.envoy.listener_port}"
    async with grpc.aio.insecure_channel(edge.core_target) as direct_channel:
        direct = trading_pb2_grpc.TradingServiceStub(direct_channel)
        identity = ((ACCOUNT_HEADER, ALICE[2]),)

        async def direct_one(number: int) -> None:
            await direct.PlaceOrder(_order(number, "direct"), metadata=identity)

        results.append(
            await _run_phase(
                "native gRPC unary, direct to core",
                seconds=seconds,
                concurrency=concurrency,
                one=direct_one,
            )
        )

    async with grpc.aio.insecure_channel(envoy_target) as edge_channel:
        through_envoy = trading_pb2_grpc.TradingServiceStub(edge_channel)

        async def grpc_one(number: int) -> None:
            request = _order(number, "grpc")
            metadata = grpc_metadata(
                key_id=ALICE[0],
                secret=ALICE[1],
                method_path=PLACE_PATH,
                timestamp_ms=now_ms(),
                message=request.SerializeToString(),
            )
            await through_envoy.PlaceOrder(request, metadata=metadata)

        results.append(
            await _run_phase(
                "signed gRPC unary through Envoy",
                seconds=seconds,
                concurrency=concurrency,
                one=grpc_one,
            )
        )

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(f"http://{envoy_target}", connector=connector) as session:

        async def rest_one(number: int) -> None:
            body = json.dumps(
                {
                    "client_order_id": f"rest-{number}",
                    "symbol": "BTC-USDT",
                    "side": "SIDE_BUY",
                    "order_type": "ORDER_TYPE_LIMIT",
                    "price": str(PRICE),
                    "quantity": str(QUANTITY),
                }
            ).encode()
            headers = rest_headers(
                key_id=ALICE[0],
                secret=ALICE[1],
                method="POST",
                path="/v1/orders",
                timestamp_ms=now_ms(),
                body=body,
            )
            headers["Idempotency-Key"] = f"rest-{number}"
            headers["Content-Type"] = "application/json"
            async with session.post("/v1/orders", data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    message = f"REST order refused: {response.status} {await response.text()}"
                    raise RuntimeError(message)

        results.append(
            await _run_phase(
                "signed REST through Envoy",
                seconds=seconds,
                concurrency=concurrency,
                one=rest_one,
            )
        )
    return results


async def _fan_out(edge: RealEdge, *, seconds: float, clients: int, rate: int) -> str:
    """Sells straight to the core at `rate`/s, each trading with a resting buy; every client
    on trades:BTC-USDT through Envoy must receive every trade."""
    delays_ms: list[float] = []
    total = int(seconds * rate)
    url = edge.envoy.base_url + "/ws"
    # limit=0: one connector slot per WebSocket, without aiohttp's default cap of 100.
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
        grpc.aio.insecure_channel(edge.core_target) as channel,
    ):
        sockets = [await session.ws_connect(url) for _ in range(clients)]
        for client in sockets:
            await client.send_json({"subscribe": {"channels": ["trades:BTC-USDT"]}})
            await client.receive_str(timeout=10)

        async def receive(client: aiohttp.ClientWebSocketResponse) -> None:
            seen = 0
            while seen < total:
                message = json.loads(await client.receive_str(timeout=60))
                if "trade" not in message:
                    continue
                executed_at = message["trade"]["trade"]["executedAt"]
                delays_ms.append((time.time() - _epoch_seconds(executed_at)) * 1000)
                seen += 1

        receivers = [asyncio.create_task(receive(client)) for client in sockets]
        trading = trading_pb2_grpc.TradingServiceStub(channel)
        identity = ((ACCOUNT_HEADER, BOB[2]),)
        started = time.perf_counter()
        for number in range(total):
            await trading.PlaceOrder(_order(number, "fan-out-sell", side=2), metadata=identity)
            await asyncio.sleep(max(0.0, started + (number + 1) / rate - time.perf_counter()))
        await asyncio.gather(*receivers)
        elapsed = time.perf_counter() - started
        for client in sockets:
            await client.close()
    p50, p99 = _percentiles(delays_ms)
    return (
        f"WebSocket fan-out from the real core, {clients} clients, {rate} trades/s placed: "
        f"{len(delays_ms) / elapsed:.0f} messages/s delivered ({len(delays_ms)} of "
        f"{total * clients}), trade-to-client p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )


def _epoch_seconds(rfc3339: str) -> float:
    """`2026-11-21T10:00:00.123456789Z` -> epoch seconds (sub-microsecond digits dropped)."""
    whole, _, fraction = rfc3339.rstrip("Z").partition(".")
    stamp = time.mktime(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) - time.timezone
    return stamp + (float(f"0.{fraction}") if fraction else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--websocket-clients", type=int, default=200)
    parser.add_argument("--websocket-rate", type=int, default=50)
    arguments = parser.parse_args()
    results, fan_out = asyncio.run(bench(arguments))
    print(f"upstream: the real core (WAL, outbox to Tansu); concurrency {arguments.concurrency}")
    for result in results:
        print(result.line())
    direct = results[0].orders_per_second
    for result in results[1:]:
        print(f"ratio {result.name} / direct gRPC: {result.orders_per_second / direct:.2f}")
    print(fan_out)


if __name__ == "__main__":
    main()
