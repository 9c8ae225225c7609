"""Edge benchmark: orders per second through Envoy (signed REST, signed native gRPC) beside
native gRPC unary straight to the upstream, in the same run, with the ratio.

Run: .venv/bin/python bench/edge_bench.py [--seconds 5] [--concurrency 32]
                                          [--websocket-clients 200] [--websocket-rate 100]

What runs (all real processes on loopback): redis-server, the gateway (`python -m gateway`),
Envoy rendered by gateway/envoy_config.py, and the upstream TradingService - the stand-in
core of tests/integration/edge (an in-memory PlaceOrder; the real core's service is not
on main yet). Each REST order is signed (X-API-KEY, X-TS, X-SIGNATURE), carries its own
Idempotency-Key and client_order_id, and so passes every check: key lookup, replay mark,
rate-limit window, REST body validation and the idempotency binding (the rate limit is
raised so the bench measures the path, not the limit). Prints orders/s and p50/p99 latency
per phase and the ratio of each edge phase to direct gRPC.

Then the WebSocket fan-out: N clients through Envoy's `/ws` subscribed to one trades
channel, trades published into the gateway's hub at a fixed rate for the same duration;
prints messages/s delivered and the p50/p99 delay from publish to a client's receipt
(the gateway runs in this process, so publisher and clients share its clock and cores).
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
from exchange.websocket.v1 import websocket_pb2

from gateway.fanout import Hub
from gateway.server import running_gateway
from gateway.settings import GatewaySettings
from gateway.signing import grpc_metadata, rest_headers
from infra.local.ports import free_port
from infra.local.redis import RedisServer
from tests.integration.edge.harness import (
    ALICE,
    GatewayProcess,
    edge_parameters,
    now_ms,
    start_envoy,
)
from tests.integration.edge.standin_core import start_standin_core

PLACE_PATH = "/exchange.trading.v1.TradingService/PlaceOrder"


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
        latencies = sorted(self.latencies_ms)
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return (
            f"{self.name:<34} {self.orders_per_second:>9.0f} orders/s"
            f"   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   ({self.orders} orders)"
        )


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


def _order(number: int, prefix: str) -> trading_pb2.PlaceOrderRequest:
    return trading_pb2.PlaceOrderRequest(
        client_order_id=f"{prefix}-{number}",
        symbol="BTC-USDT",
        side=1,  # type: ignore[arg-type]  # SIDE_BUY
        order_type=1,  # type: ignore[arg-type]  # ORDER_TYPE_LIMIT
        price=2_500_000_000,
        quantity=100_000,
    )


async def bench(*, seconds: float, concurrency: int) -> list[PhaseResult]:
    core, core_server, core_port = start_standin_core()
    with tempfile.TemporaryDirectory() as temporary, RedisServer() as redis:
        directory = Path(temporary)
        gateway = GatewayProcess(
            redis_url=redis.url, environment={"EDGE_RATE_LIMIT_PER_MINUTE": "100000000"}
        )
        gateway.start()
        parameters = edge_parameters(
            core_port=core_port, gateway=gateway, directory=directory, access_log_path="/dev/null"
        )
        envoy = start_envoy(parameters, directory)
        try:
            return await _phases(
                envoy_target=f"127.0.0.1:{parameters.listener_port}",
                core_target=f"127.0.0.1:{core_port}",
                seconds=seconds,
                concurrency=concurrency,
            )
        finally:
            envoy.stop()
            gateway.stop()
            core_server.stop(grace=None)
            del core


async def _phases(
    *, envoy_target: str, core_target: str, seconds: float, concurrency: int
) -> list[PhaseResult]:
    results = []
    async with grpc.aio.insecure_channel(core_target) as direct_channel:
        direct = trading_pb2_grpc.TradingServiceStub(direct_channel)
        identity = (("x-exchange-account-id", ALICE[2]),)

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
        edge = trading_pb2_grpc.TradingServiceStub(edge_channel)

        async def grpc_one(number: int) -> None:
            request = _order(number, "grpc")
            metadata = grpc_metadata(
                key_id=ALICE[0],
                secret=ALICE[1],
                method_path=PLACE_PATH,
                timestamp_ms=now_ms(),
                message=request.SerializeToString(),
            )
            await edge.PlaceOrder(request, metadata=metadata)

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
                    "price": "2500000000",
                    "quantity": "100000",
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


async def bench_websocket(*, seconds: float, clients: int, rate: int) -> str:
    with tempfile.TemporaryDirectory() as temporary, RedisServer() as redis:
        directory = Path(temporary)
        settings = GatewaySettings(
            redis_url=redis.url, http_port=free_port(), grpc_port=free_port()
        )
        async with running_gateway(settings) as gateway:
            ports = GatewayProcess(
                redis.url, http_port=gateway.http_port, grpc_port=gateway.grpc_port
            )
            parameters = edge_parameters(
                core_port=free_port(),
                gateway=ports,
                directory=directory,
                access_log_path="/dev/null",
            )
            envoy = await asyncio.to_thread(start_envoy, parameters, directory)
            try:
                return await _fan_out(gateway.hub, envoy.base_url + "/ws", seconds, clients, rate)
            finally:
                await asyncio.to_thread(envoy.stop)


async def _fan_out(hub: Hub, url: str, seconds: float, clients: int, rate: int) -> str:
    published_at: dict[int, float] = {}
    delays_ms: list[float] = []
    total = int(seconds * rate)
    # limit=0: one connector slot per WebSocket, without aiohttp's default cap of 100.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        sockets = [await session.ws_connect(url) for _ in range(clients)]
        for client in sockets:
            await client.send_json({"subscribe": {"channels": ["trades:BTC-USDT"]}})
            await client.receive_str(timeout=10)

        async def receive(client: aiohttp.ClientWebSocketResponse) -> None:
            seen = 0
            while seen < total:
                message = json.loads(await client.receive_str(timeout=30))
                seq = int(message["trade"]["trade"]["seq"])
                delays_ms.append((time.perf_counter() - published_at[seq]) * 1000)
                seen += 1

        receivers = [asyncio.create_task(receive(client)) for client in sockets]
        started = time.perf_counter()
        for seq in range(1, total + 1):
            message = websocket_pb2.ServerMessage()
            message.trade.trade.trade_id = str(seq)
            message.trade.trade.symbol = "BTC-USDT"
            message.trade.trade.price = 2_500_000_000
            message.trade.trade.quantity = 1000
            message.trade.trade.seq = seq
            published_at[seq] = time.perf_counter()
            hub.publish("trades:BTC-USDT", message)
            await asyncio.sleep(max(0.0, started + seq / rate - time.perf_counter()))
        await asyncio.gather(*receivers)
        elapsed = time.perf_counter() - started
        for client in sockets:
            await client.close()
    delays = sorted(delays_ms)
    p50 = statistics.median(delays)
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    return (
        f"WebSocket fan-out, {clients} clients, {rate} trades/s published: "
        f"{len(delays) / elapsed:.0f} messages/s delivered, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"slow-consumer closes {hub.stats.slow_consumer_disconnects}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--websocket-clients", type=int, default=200)
    parser.add_argument("--websocket-rate", type=int, default=100)
    arguments = parser.parse_args()
    results = asyncio.run(bench(seconds=arguments.seconds, concurrency=arguments.concurrency))
    print(f"upstream: stand-in TradingService; concurrency {arguments.concurrency}")
    for result in results:
        print(result.line())
    direct = results[0].orders_per_second
    for result in results[1:]:
        print(f"ratio {result.name} / direct gRPC: {result.orders_per_second / direct:.2f}")
    print(
        asyncio.run(
            bench_websocket(
                seconds=arguments.seconds,
                clients=arguments.websocket_clients,
                rate=arguments.websocket_rate,
            )
        )
    )


if __name__ == "__main__":
    main()
