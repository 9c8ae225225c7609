"""The trading core's process: sequencer + servicers + health behind one grpc.aio server.

Lifecycle (`CoreService`):
  start: open the sequencer on the data dir (epoch fence, recovery: snapshot + WAL tail; the
         history sink restores the order history's checkpoint at the snapshot and is fed the
         replayed tail) -> runtime (command intake, read models) -> the outbox's publisher
         (with a broker) -> gRPC server with TradingService, FundingService, CoreAdminService and
         grpc.health.v1 bound and started -> health SERVING.
  stop:  health NOT_SERVING -> server.stop(grace) (in-flight calls finish, new ones refused)
         -> optional final snapshot ->
         sequencer.aclose() (in-flight submits finish, WAL and fence closed).
`run_until_signal` runs it until SIGTERM / SIGINT.

The outbox (core/outbox), when `ServiceConfig.broker` names a Kafka-API broker: the journal
is the sequencer's event sink behind the history sink (so recovery regenerates what it
lacks), the publisher starts once the sequencer is open, and at stop: sequencer closed ->
journal flushed -> publisher drained (bounded) and stopped -> journal closed
(core/outbox/README.md, "Wiring").

A component beside the server is wired in `CoreService.start` / `stop` as the outbox is:
after recovery and before the port opens, stopped after the port closed and before the
sequencer closes. Results of every batch can reach it in WAL order through
`runtime.intake.add_listener(...)`; its published position through
`runtime.published_engine_seq` (GetEngineStatus reports it).
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc
from exchange.funding.v1 import funding_pb2, funding_pb2_grpc
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.event_path_health import (
    EVENT_PATH_SERVICE,
    BrokerProbe,
    EventPath,
    HealthReporter,
    health_setter,
)
from common.request_decoding import DecodeErrorInterceptor
from common.topics import CORE_EVENTS_TOPIC, TRADE_EVENTS_TOPIC
from core.contracts.orders import BATCH_COMMANDS_MAX
from core.engine import EngineConfig
from core.outbox import OutboxJournal, OutboxPublisher, PublisherOptions
from core.sequencer import Sequencer, SequencerOptions
from core.service.admin import CoreAdminServicer
from core.service.errors import LOGGER
from core.service.funding import FundingServicer
from core.service.history_sink import HistorySink
from core.service.runtime import CoreRuntime
from core.service.trading import TradingServicer
from core.wal import WalOptions

MESSAGE_BYTES_MAX: Final = 16 * 1024 * 1024
# The WAL takes one stream batch in one call; leave room for the largest batch.
WAL_GROUP_RECORDS_MAX: Final = 2 * BATCH_COMMANDS_MAX
# Small young generations and no automatic full collection (core/engine/README.md: the
# engine's steady state makes no reference cycles); the heap after recovery is frozen.
GC_THRESHOLDS: Final = (2_000, 5, 1_000_000)
SERVICE_NAMES: Final = (
    trading_pb2.DESCRIPTOR.services_by_name["TradingService"].full_name,
    funding_pb2.DESCRIPTOR.services_by_name["FundingService"].full_name,
    core_admin_pb2.DESCRIPTOR.services_by_name["CoreAdminService"].full_name,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    data_dir: Path
    listen: str = "127.0.0.1:50051"
    shard_id: str = "core-0"
    snapshot_every_commands: int = 100_000
    snapshot_on_shutdown: bool = True
    shutdown_grace_seconds: float = 5.0
    tune_garbage_collector: bool = True  # freeze the recovered heap, small young generations
    # For a fresh shard only (a snapshot carries its own engine config).
    open_orders_max_per_account: int = EngineConfig().open_orders_max_per_account
    # The per-account windows that bound the core's memory (docs/adr/0019): idempotency keys
    # (client order ids, transfer ids, request ids) and closed orders in the engine (fresh
    # shard only), orders and fills in the order history. None: the defaults (10,000 each).
    history_window_per_account: int | None = None
    # The Kafka-API broker ("host:port[,host:port]") the outbox publishes to; None: no outbox
    # (events are neither journaled nor published — tests and tools only).
    broker: str | None = None
    outbox_drain_seconds: float = 5.0


class CoreService:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.port = 0
        self._runtime: CoreRuntime | None = None
        self._server: aio.Server | None = None
        self._health_servicer = health.aio.HealthServicer()
        self._journal: OutboxJournal | None = None
        self._publisher: OutboxPublisher | None = None
        self._probe: BrokerProbe | None = None
        self.health_reporter: HealthReporter | None = None

    @property
    def runtime(self) -> CoreRuntime:
        if self._runtime is None:
            raise RuntimeError("the service is not started")
        return self._runtime

    async def start(self) -> int:
        """Recover, start components and serve; returns the bound port."""
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        journal = None
        if config.broker is not None:
            journal = self._journal = OutboxJournal(shard_id=config.shard_id)
        window = config.history_window_per_account
        if window is None:
            history_sink = HistorySink(journal)
            engine_config = EngineConfig(
                open_orders_max_per_account=config.open_orders_max_per_account
            )
        else:
            history_sink = HistorySink(
                journal, orders_max_per_account=window, fills_max_per_account=window
            )
            engine_config = EngineConfig(
                open_orders_max_per_account=config.open_orders_max_per_account,
                client_order_ids_max_per_account=window,
                transfer_ids_max_per_account=window,
                closed_orders_max_per_account=min(
                    window, EngineConfig().closed_orders_max_per_account
                ),
                request_ids_max_per_account=window,
            )
        sequencer = Sequencer.open(
            config.data_dir,
            clock=time.time_ns,
            options=SequencerOptions(
                snapshot_every_commands=config.snapshot_every_commands,
                wal_options=WalOptions(group_records_max=WAL_GROUP_RECORDS_MAX),
                engine_config=engine_config,
            ),
            event_sink=history_sink,
        )
        runtime = self._runtime = CoreRuntime.create(
            sequencer, history_sink, shard_id=config.shard_id
        )
        if journal is not None and config.broker is not None:
            publisher = self._publisher = OutboxPublisher(
                journal, PublisherOptions(bootstrap_servers=config.broker)
            )
            publisher.start()
            runtime.published_engine_seq = lambda: publisher.published_seq
            runtime.published_position = lambda: publisher.position
        recovery = sequencer.recovery
        LOGGER.info(
            "recovered shard %s: epoch %d, snapshot %d, %d replayed, engine seq %d, "
            "order history from %s",
            config.shard_id,
            recovery.epoch,
            recovery.snapshot_seq,
            recovery.replayed_count,
            recovery.engine_seq,
            history_sink.restored_from or "the WAL",
        )
        server = self._server = aio.server(
            interceptors=[DecodeErrorInterceptor()],
            options=[
                ("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
                ("grpc.max_send_message_length", MESSAGE_BYTES_MAX),
                # Two processes must never share a port silently (grpc sets SO_REUSEPORT by
                # default): a second core on the same address fails to start instead.
                ("grpc.so_reuseport", 0),
            ],
        )
        trading_pb2_grpc.add_TradingServiceServicer_to_server(TradingServicer(runtime), server)
        funding_pb2_grpc.add_FundingServiceServicer_to_server(FundingServicer(runtime), server)
        core_admin_pb2_grpc.add_CoreAdminServiceServicer_to_server(
            CoreAdminServicer(runtime), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health_servicer, server)
        try:
            self.port = server.add_insecure_port(config.listen)
        except RuntimeError as error:  # grpc's "Failed to bind to address"
            raise OSError(f"cannot listen on {config.listen}: {error}") from error
        if self.port == 0:
            raise OSError(f"cannot listen on {config.listen}")
        await server.start()
        if config.tune_garbage_collector:
            gc.collect()
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        if self._publisher is not None and config.broker is not None:
            # The event path's health: the outbox's rounds, and the broker probed even when
            # there is nothing to publish (common/event_path_health.py).
            probe = self._probe = BrokerProbe(
                config.broker,
                (CORE_EVENTS_TOPIC, TRADE_EVENTS_TOPIC),
                EventPath("core broker probe"),
            )
            probe.start()
            self.health_reporter = HealthReporter(
                [self._publisher.path, probe.path],
                health_setter(self._health_servicer.set),
                logger=LOGGER,
            )
            self.health_reporter.start()
        return self.port

    async def _set_health(
        self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType
    ) -> None:
        for name in ("", *SERVICE_NAMES):
            await self._health_servicer.set(name, status)

    async def stop(self) -> None:
        """Drain and close everything; safe to call once after start (or a failed start)."""
        if self.health_reporter is not None:
            await self.health_reporter.stop()
        if self._probe is not None:
            await self._probe.stop()
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._health_servicer.set(
            EVENT_PATH_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING
        )
        if self._server is not None:
            await self._server.stop(self.config.shutdown_grace_seconds)
        if self._runtime is not None:
            sequencer = self._runtime.sequencer
            if self.config.snapshot_on_shutdown and sequencer.engine_seq > sequencer.snapshot_seq:
                try:
                    await sequencer.snapshot()
                except Exception as error:  # noqa: BLE001  (the WAL has everything)
                    LOGGER.error("the shutdown snapshot failed", exc_info=error)
            await sequencer.aclose()
        await self._stop_outbox()

    async def _stop_outbox(self) -> None:
        """After the sequencer closed: everything journaled is made durable, published if
        the broker answers within `outbox_drain_seconds` (the rest goes out at the next
        start, from the durable cursor), and the journal is closed."""
        journal, publisher = self._journal, self._publisher
        self._journal = self._publisher = None
        if journal is None:
            return
        try:
            await journal.flush()
        except Exception as error:  # noqa: BLE001  (recovery regenerates from the WAL)
            LOGGER.error("the outbox journal failed to flush", exc_info=error)
        if publisher is not None:
            await publisher.stop(drain_timeout_seconds=self.config.outbox_drain_seconds)
        await journal.aclose()

    async def run_until_signal(self) -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, stopping.set)
        try:
            port = await self.start()
            host = self.config.listen.rsplit(":", 1)[0]
            print(f"core service listening on {host}:{port}", flush=True)  # noqa: T201
            await stopping.wait()
        finally:
            await self.stop()


def main(argv: Sequence[str] | None = None) -> None:
    from core.service.config import parse_config  # noqa: PLC0415  (CLI only)

    config = parse_config(sys.argv[1:] if argv is None else argv)
    asyncio.run(CoreService(config).run_until_signal())
