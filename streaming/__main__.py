"""The streaming process: the Quix application and the MarketDataService history reads.

    python -m streaming --broker HOST:PORT --redis-url redis://... \
        --data-dir var/streaming --listen 127.0.0.1:50054 [--clickhouse-url http://...]

start: open the history store (chdb under <data-dir>/clickhouse, or the server) -> gRPC
       server (MarketDataService + health) on --listen in a thread of its own -> health
       SERVING -> the Quix application in the main thread (it owns SIGTERM/SIGINT).
stop:  SIGTERM/SIGINT -> Quix finishes the current checkpoint and closes -> health
       NOT_SERVING -> gRPC server stops (grace 2 s) -> the store and Redis are closed.
crash: when the Quix application fails (e.g. the transactional producer reports a fatal
       error: against Tansu it did, under load, a few seconds into a burst), its open
       transaction is not committed, so nothing of the failed checkpoint counts; the
       process logs it and runs a new application after a back-off (1 s doubling to 30 s),
       which resumes from the last committed offsets and the state's changelog - exactly
       as a restarted process would, but without losing the history server. A stop signal
       during the back-off ends the process.
Only this process opens the chdb directory (embedded ClickHouse is single-process).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, cast

import grpc
from exchange.marketdata.v1 import marketdata_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.event_path_health import BrokerProbe, EventPath, HealthReporter, health_setter
from common.request_decoding import DecodeErrorInterceptor
from common.topics import CANDLES_TOPIC, TICKERS_TOPIC, TRADE_EVENTS_TOPIC
from streaming.app import (
    CONSUMER_GROUP_DEFAULT,
    MarketDataSink,
    ProcessingGuarantee,
    StreamingOptions,
    build_application,
)
from streaming.history import HistoryStore, open_store
from streaming.latest_state import LatestState
from streaming.service import SERVICE_NAME, MarketHistoryService

LOGGER: Final = logging.getLogger("streaming")
STOP_GRACE_SECONDS: Final = 2.0
RESTART_BACKOFF_FIRST_SECONDS: Final = 1.0
RESTART_BACKOFF_MAX_SECONDS: Final = 30.0


def run_until_stopped(
    run_application: Callable[[], None],
    stopping: threading.Event,
    *,
    backoff_first_seconds: float = RESTART_BACKOFF_FIRST_SECONDS,
    backoff_max_seconds: float = RESTART_BACKOFF_MAX_SECONDS,
) -> int:
    """Runs a fresh application until one returns (a stop signal) or `stopping` is set;
    an application that raises is logged and replaced after a doubling back-off. Returns
    how many applications failed."""
    failures = 0
    backoff = backoff_first_seconds
    while not stopping.is_set():
        try:
            run_application()
        except Exception:
            failures += 1
            LOGGER.exception(
                "streaming: the application failed (%d so far); a new one in %.1f s",
                failures,
                backoff,
            )
            if stopping.wait(backoff):
                break
            backoff = min(backoff * 2, backoff_max_seconds)
            continue
        break  # returned: stopped by a signal
    return failures


class HistoryServer:
    """grpc.aio server with MarketDataService + health, on an event loop in its own thread."""

    def __init__(self, store: HistoryStore, listen: str, *, broker: str | None = None) -> None:
        self.store = store
        self.listen = listen
        # The event path's health (common/event_path_health.py): Quix's client only retries in
        # silence, so the broker is probed for the topics the application reads and writes.
        self._probe = (
            None
            if broker is None
            else BrokerProbe(
                broker,
                (TRADE_EVENTS_TOPIC, CANDLES_TOPIC, TICKERS_TOPIC),
                EventPath("streaming application"),
            )
        )
        self._reporter: HealthReporter | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc", daemon=True)
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)

    async def _start(self) -> None:
        server = grpc.aio.server(
            interceptors=[DecodeErrorInterceptor()], options=[("grpc.so_reuseport", 0)]
        )
        marketdata_pb2_grpc.add_MarketDataServiceServicer_to_server(
            MarketHistoryService(self.store), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if server.add_insecure_port(self.listen) == 0:
            raise SystemExit(f"streaming: cannot listen on {self.listen}")
        await server.start()
        self._server = server
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        if self._probe is not None:
            self._probe.start()
            self._reporter = HealthReporter(
                [self._probe.path], health_setter(self._health.set), logger=LOGGER
            )
            self._reporter.start()

    async def _set_health(
        self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType
    ) -> None:
        for name in ("", SERVICE_NAME):
            await self._health.set(name, status)

    async def _stop(self) -> None:
        if self._reporter is not None:
            await self._reporter.stop()
        if self._probe is not None:
            await self._probe.stop()
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._server is not None:
            await self._server.stop(STOP_GRACE_SECONDS)

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m streaming", description=__doc__)
    parser.add_argument("--broker", required=True, help="Kafka-API bootstrap servers")
    parser.add_argument("--redis-url", required=True, help="latest state for the gateway")
    parser.add_argument("--listen", required=True, help="HOST:PORT of MarketDataService")
    parser.add_argument("--data-dir", type=Path, default=Path("var/streaming"))
    parser.add_argument(
        "--clickhouse-path", type=Path, help="embedded ClickHouse directory (<data-dir>/clickhouse)"
    )
    parser.add_argument("--clickhouse-url", help="a ClickHouse server instead of chdb")
    parser.add_argument("--consumer-group", default=CONSUMER_GROUP_DEFAULT)
    parser.add_argument(
        "--processing-guarantee", choices=["exactly-once", "at-least-once"], default="exactly-once"
    )
    parser.add_argument("--commit-interval-seconds", type=float, default=1.0)
    parser.add_argument("--watermark-lateness-ms", type=int, default=5_000)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    arguments = parse_arguments(argv)
    data_directory: Path = arguments.data_dir
    clickhouse_path = arguments.clickhouse_path or data_directory / "clickhouse"
    store = open_store(clickhouse_path=clickhouse_path, clickhouse_url=arguments.clickhouse_url)
    latest = LatestState(arguments.redis_url)
    server = HistoryServer(store, arguments.listen, broker=arguments.broker)
    try:
        server.start()
        options = StreamingOptions(
            broker=arguments.broker,
            state_directory=data_directory / "state",
            consumer_group=arguments.consumer_group,
            processing_guarantee=cast(ProcessingGuarantee, arguments.processing_guarantee),
            commit_interval_seconds=arguments.commit_interval_seconds,
            lateness_ns=arguments.watermark_lateness_ms * 1_000_000,
        )
        stopping = threading.Event()
        failed_before: list[bool] = []  # an application ran (and so failed) before this one

        def stop(_signal: int, _frame: object) -> None:
            stopping.set()

        def run_application() -> None:
            # Between applications (the back-off) a stop signal is ours; while one runs,
            # Quix's own handlers stop it at the end of its checkpoint.
            for stop_signal in (signal.SIGTERM, signal.SIGINT):
                signal.signal(stop_signal, stop)
            # A new sink too: the failed one's cache may hold what its checkpoint never
            # committed; the new one starts from the committed state.
            app, _pipeline = build_application(options, sink=MarketDataSink(store, latest))
            if failed_before:
                # The failed application's local store may be ahead of what its changelog
                # topic committed (Quix then refuses it): restore it from the changelog.
                app.clear_state()  # type: ignore[no-untyped-call]
            failed_before.append(True)
            if not stopping.is_set():
                app.run()  # returns after SIGTERM / SIGINT, once the checkpoint is committed

        LOGGER.info(
            "streaming: serving history on %s, consuming %s", arguments.listen, options.broker
        )
        run_until_stopped(run_application, stopping)
    finally:
        server.stop()
        latest.close()
        store.close()
        LOGGER.info("streaming: stopped")


if __name__ == "__main__":
    main()
