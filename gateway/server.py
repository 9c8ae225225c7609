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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
from aiohttp import web
from exchange.apikey.v1 import apikey_pb2_grpc
from exchange.marketdata.v1 import marketdata_pb2_grpc
from exchange.marketdata.v1 import types_pb2 as marketdata_types_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.event_path_health import BrokerProbe, EventPath, HealthReporter, health_setter
from common.request_decoding import DecodeErrorInterceptor
from gateway.api_key_service import ApiKeyService
from gateway.api_keys import ApiKeyStore
from gateway.authorization import Authorizer
from gateway.fanout import FanoutLimits, Hub
from gateway.http_app import build_http_app
from gateway.market_data.consumer import ConsumerOptions, EventLogConsumer
from gateway.market_data.core_snapshot import CoreSnapshots
from gateway.market_data.introspection import consumer_status, projection_state
from gateway.market_data.projection import MarketDataProjection
from gateway.market_data.service import DEPTH_MAX, MarketDataService
from gateway.redis_client import redis_client
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
    projection: MarketDataProjection
    # None without a broker (EDGE_BROKER unset).
    consumer: EventLogConsumer | None


def book_snapshots(
    projection: MarketDataProjection,
) -> Callable[[str], marketdata_types_pb2.OrderBook]:
    """What a `book:<SYMBOL>` subscription starts from: the projected book (up to 1,000
    levels a side), or an empty book at seq 0 for a market not listed (yet)."""

    def snapshot(symbol: str) -> marketdata_types_pb2.OrderBook:
        book = projection.book(symbol)
        if book is None:
            return marketdata_types_pb2.OrderBook(symbol=symbol, seq=0)
        return book.snapshot(DEPTH_MAX)

    return snapshot


@contextlib.asynccontextmanager
async def running_gateway(
    settings: GatewaySettings, *, fanout_limits: FanoutLimits | None = None
) -> AsyncIterator[RunningGateway]:
    """Starts both servers, yields their ports, and stops them (and Redis) on exit."""
    redis = redis_client(settings.redis_url, decode_responses=True)
    await redis.ping()
    keys = ApiKeyStore(redis, settings, clock_ms=wall_clock_ms)
    authorizer = Authorizer(
        redis=redis,
        keys=keys,
        settings=settings,
        validator=RestRequestValidator(),
        clock_ms=wall_clock_ms,
    )
    projection = MarketDataProjection()
    hub = Hub(limits=fanout_limits or FanoutLimits(), book_snapshot=book_snapshots(projection))
    # Tickers are stored as protobuf bytes: a client that does not decode responses.
    market_redis = redis_client(settings.redis_url, decode_responses=False)
    market_data = MarketDataService(
        projection, market_redis, history_address=settings.market_history_address
    )
    consumer: EventLogConsumer | None = None
    consumer_task: asyncio.Task[None] | None = None
    snapshots = CoreSnapshots(settings.core_address) if settings.core_address else None
    if settings.broker:
        consumer = EventLogConsumer(
            ConsumerOptions(settings.broker), projection, hub, snapshots=snapshots
        )
        consumer_task = asyncio.create_task(_run_consumer(consumer))
    app = build_http_app(
        authorizer,
        hub,
        market_data_status=lambda: consumer_status(consumer),
        market_data_state=lambda: projection_state(projection),
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    server = grpc.aio.server(
        interceptors=[DecodeErrorInterceptor()],
        options=[("grpc.so_reuseport", 0)],  # no silent port sharing
    )
    apikey_pb2_grpc.add_ApiKeyServiceServicer_to_server(ApiKeyService(keys), server)
    marketdata_pb2_grpc.add_MarketDataServiceServicer_to_server(market_data, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    grpc_port = server.add_insecure_port(f"{settings.http_host}:{settings.grpc_port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    watch = _watch_event_path(settings, consumer, health_servicer)
    try:
        yield RunningGateway(
            http_port=settings.http_port,
            grpc_port=grpc_port,
            hub=hub,
            projection=projection,
            consumer=consumer,
        )
    finally:
        for watcher in reversed(watch):
            await watcher.stop()
        if consumer_task is not None:
            consumer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer_task
        await server.stop(grace=1)
        await runner.cleanup()
        await market_data.close()
        if snapshots is not None:
            await snapshots.close()
        await market_redis.aclose()
        await redis.aclose()


def _watch_event_path(
    settings: GatewaySettings,
    consumer: EventLogConsumer | None,
    health_servicer: health.aio.HealthServicer,
) -> list[BrokerProbe | HealthReporter]:
    """The market-data consumer's event path (common/event_path_health.py), started: its
    aiokafka client only retries in silence, so the broker is probed for the topics it reads."""
    if consumer is None:
        return []
    probe = BrokerProbe(settings.broker, consumer.topics, EventPath("gateway market-data consumer"))
    probe.start()
    reporter = HealthReporter([probe.path], health_setter(health_servicer.set))
    reporter.start()
    return [probe, reporter]


async def _run_consumer(consumer: EventLogConsumer) -> None:
    """Runs the event-log consumer for the gateway's life; a failure is logged and the
    consumer restarted after a pause (the projection dedupes what is read again)."""
    while True:
        try:
            await consumer.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - any failure: log, pause, read again
            _LOG.exception("market data consumer failed; restarting in 1 s")
        await asyncio.sleep(1.0)


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
