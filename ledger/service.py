"""The ledger process: `python -m ledger.service` — gRPC LedgerService + settlement consumer.

    python -m ledger.db.migrate postgresql+psycopg://OWNER@HOST:PORT/DB      # once, as owner
    python -m ledger.service --database-url postgresql+psycopg://APP@HOST:PORT/DB \
        --listen 127.0.0.1:50061 --core-address 127.0.0.1:50051 --shard-id shard-1 \
        --kafka-bootstrap 127.0.0.1:9092 --partitions 0

One bootstrap wires the adapters: the SQLAlchemy/psycopg engine, the journal writer shared by
settlement and corrections, the core's gRPC clients (CoreAdminService for reconciliation,
FundingService for adjustments) and, with --kafka-bootstrap, the settlement consumer and
the publisher of the ledger's own events (`--ledger-events-topic`, default ledger.events.v1;
`--no-publish-ledger-events` leaves them in the outbox table for another process to publish).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from dataclasses import dataclass

import grpc
from exchange.ledger.v1 import ledger_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from common.event_path_health import BrokerProbe, EventPath, HealthReporter, health_setter
from common.request_decoding import DecodeErrorInterceptor
from common.topics import LEDGER_EVENTS_TOPIC
from ledger.adjustments import Adjustments, FundingClient, GrpcFundingClient
from ledger.consumer import CORE_EVENTS_TOPIC, ConsumerOptions, SettlementConsumer
from ledger.corrections import Corrections
from ledger.db.connection import create_engine
from ledger.domain import LagBound
from ledger.events_publisher import LedgerEventsOptions, LedgerEventsPublisher
from ledger.gc_tuning import tune_garbage_collector
from ledger.grpc_service import LedgerService
from ledger.reconciliation import CoreView, GrpcCoreView, Reconciliation
from ledger.settlement import Settlement

SERVICE_NAME = "exchange.ledger.v1.LedgerService"


@dataclass
class RunningLedger:
    server: grpc.aio.Server
    port: int
    engine: AsyncEngine
    settlement: Settlement
    health: health.aio.HealthServicer

    async def stop(self) -> None:
        await self.server.stop(grace=1.0)
        await self.engine.dispose()


async def start_ledger(
    *,
    database_url: str,
    listen: str,
    shard_id: str,
    core: CoreView,
    funding: FundingClient,
    lag_bound: LagBound | None = None,
) -> RunningLedger:
    """Build and start the gRPC server (port 0 in `listen`: a free one)."""
    engine = create_engine(database_url)
    settlement = Settlement(engine)
    service = LedgerService(
        engine=engine,
        settlement=settlement,
        corrections=Corrections(engine, settlement.writer),
        reconciliation=Reconciliation(engine, core, shard_id=shard_id, lag_bound=lag_bound),
        adjustments=Adjustments(engine, funding),
    )
    server = grpc.aio.server(
        interceptors=[DecodeErrorInterceptor()],
        options=[("grpc.so_reuseport", 0)],  # no silent port sharing
    )
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(service, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(listen)
    await server.start()
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    return RunningLedger(server, port, engine, settlement, health_servicer)


async def _main(arguments: argparse.Namespace) -> None:
    core_channel = grpc.aio.insecure_channel(arguments.core_address)
    ledger = await start_ledger(
        database_url=arguments.database_url,
        listen=arguments.listen,
        shard_id=arguments.shard_id,
        core=GrpcCoreView(core_channel),
        funding=GrpcFundingClient(core_channel),
        lag_bound=LagBound(
            engine_seqs_max=arguments.reconciliation_lag_seqs_max,
            stalled_ms_max=1000 * arguments.reconciliation_stalled_seconds_max,
        ),
    )
    logging.getLogger("ledger").info("LedgerService listening on port %d", ledger.port)
    if arguments.tune_garbage_collector:
        tune_garbage_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    consumer: SettlementConsumer | None = None
    consuming: asyncio.Task[None] | None = None
    if arguments.kafka_bootstrap:
        options = ConsumerOptions(
            arguments.kafka_bootstrap,
            partitions=[int(p) for p in arguments.partitions.split(",") if p],
        )
        consumer = SettlementConsumer(ledger.settlement, ledger.engine, options)
        await consumer.start()
        consuming = asyncio.create_task(consumer.run(stop))
        # Settlement ending by itself (an event it cannot post) ends the service: a ledger
        # that answers but no longer settles must be seen as down (the exit code says so).
        consuming.add_done_callback(lambda _task: stop.set())
    publisher: LedgerEventsPublisher | None = None
    if arguments.kafka_bootstrap and arguments.publish_ledger_events:
        publisher = LedgerEventsPublisher(
            ledger.engine,
            LedgerEventsOptions(
                bootstrap_servers=arguments.kafka_bootstrap, topic=arguments.ledger_events_topic
            ),
        )
        publisher.start()
    reporter: HealthReporter | None = None
    probe: BrokerProbe | None = None
    if arguments.kafka_bootstrap:
        # The event path's health: the broker probed for what the consumer reads and the
        # publisher writes, and the publisher's rounds (common/event_path_health.py).
        probe = BrokerProbe(
            arguments.kafka_bootstrap,
            (CORE_EVENTS_TOPIC, arguments.ledger_events_topic),
            EventPath("ledger settlement consumer"),
        )
        probe.start()
        paths = [probe.path] + ([publisher.path] if publisher is not None else [])
        reporter = HealthReporter(
            paths, health_setter(ledger.health.set), logger=logging.getLogger("ledger")
        )
        reporter.start()
    await stop.wait()
    if reporter is not None:
        await reporter.stop()
    if probe is not None:
        await probe.stop()
    if publisher is not None:
        await publisher.stop()
    failure: BaseException | None = None
    if consuming is not None:
        (outcome,) = await asyncio.gather(consuming, return_exceptions=True)
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            failure = outcome
    if consumer is not None:
        await consumer.stop()
    await ledger.stop()
    await core_channel.close()
    if failure is not None:
        logging.getLogger("ledger").error("settlement stopped: %r", failure)
        raise SystemExit(1) from failure


def main() -> None:
    parser = argparse.ArgumentParser(description="The ledger service.")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEDGER_DATABASE_URL", ""),
        required="LEDGER_DATABASE_URL" not in os.environ,
    )
    parser.add_argument("--listen", default=os.environ.get("LEDGER_LISTEN", "127.0.0.1:50061"))
    parser.add_argument(
        "--core-address", default=os.environ.get("LEDGER_CORE_ADDRESS", "127.0.0.1:50051")
    )
    parser.add_argument("--shard-id", default=os.environ.get("LEDGER_SHARD_ID", "shard-1"))
    parser.add_argument("--kafka-bootstrap", default=os.environ.get("LEDGER_KAFKA_BOOTSTRAP", ""))
    parser.add_argument("--partitions", default=os.environ.get("LEDGER_PARTITIONS", "0"))
    parser.add_argument(
        "--ledger-events-topic",
        default=os.environ.get("LEDGER_EVENTS_TOPIC", LEDGER_EVENTS_TOPIC),
        help="where the ledger publishes its own events (needs --kafka-bootstrap)",
    )
    parser.add_argument(
        "--no-publish-ledger-events",
        dest="publish_ledger_events",
        action="store_false",
        help="do not run the ledger events publisher in this process (the outbox keeps them)",
    )
    parser.add_argument(
        "--reconciliation-lag-seqs-max",
        type=int,
        default=int(
            os.environ.get("LEDGER_RECONCILIATION_LAG_SEQS_MAX", LagBound().engine_seqs_max)
        ),
        help="reconciliation reads LAGGING when the ledger lags the core by more engine seqs",
    )
    parser.add_argument(
        "--reconciliation-stalled-seconds-max",
        type=int,
        default=int(
            os.environ.get(
                "LEDGER_RECONCILIATION_STALLED_SECONDS_MAX", LagBound().stalled_ms_max // 1000
            )
        ),
        help="... or when it lags and has not advanced for longer than this",
    )
    parser.add_argument(
        "--no-tune-garbage-collector",
        dest="tune_garbage_collector",
        action="store_false",
        help="keep the interpreter's default garbage-collector thresholds",
    )
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
