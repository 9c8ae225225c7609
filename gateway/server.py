"""The gateway process: one bootstrap that wires Redis, the key store, the authorizer,
the HTTP side (ext_authz, health) and the gRPC side (ApiKeyService, health).

`python -m gateway` runs it with GatewaySettings.from_environment().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from aiohttp import web
from exchange.apikey.v1 import apikey_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from redis.asyncio import Redis

from gateway.api_key_service import ApiKeyService
from gateway.api_keys import ApiKeyStore
from gateway.authorization import Authorizer
from gateway.fanout import FanoutLimits, Hub
from gateway.http_app import build_http_app
from gateway.request_validation import RestRequestValidator
from gateway.settings import GatewaySettings

_LOG = logging.getLogger("gateway")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class RunningGateway:
    http_port: int
    grpc_port: int
    # The fan-out; the event consumers publish into it.
    hub: Hub


@contextlib.asynccontextmanager
async def running_gateway(
    settings: GatewaySettings, *, fanout_limits: FanoutLimits | None = None
) -> AsyncIterator[RunningGateway]:
    """Starts both servers, yields their ports, and stops them (and Redis) on exit."""
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    await redis.ping()
    keys = ApiKeyStore(redis, settings, clock_ms=wall_clock_ms)
    authorizer = Authorizer(
        redis=redis,
        keys=keys,
        settings=settings,
        validator=RestRequestValidator(),
        clock_ms=wall_clock_ms,
    )
    hub = Hub(limits=fanout_limits or FanoutLimits())
    runner = web.AppRunner(build_http_app(authorizer, hub), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])  # no silent port sharing
    apikey_pb2_grpc.add_ApiKeyServiceServicer_to_server(ApiKeyService(keys), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    grpc_port = server.add_insecure_port(f"{settings.http_host}:{settings.grpc_port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        yield RunningGateway(http_port=settings.http_port, grpc_port=grpc_port, hub=hub)
    finally:
        await server.stop(grace=1)
        await runner.cleanup()
        await redis.aclose()


async def serve(settings: GatewaySettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    async with running_gateway(settings) as gateway:
        _LOG.info("gateway: http %d, grpc %d", gateway.http_port, gateway.grpc_port)
        await stop.wait()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(GatewaySettings.from_environment()))
