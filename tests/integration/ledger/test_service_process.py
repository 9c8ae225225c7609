"""`python -m ledger.db.migrate` then `python -m ledger.service`: a real process that serves
gRPC, reports healthy, and stops cleanly on SIGTERM; with a broker, it settles and publishes
its own events (ledger.events.v1)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import grpc
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from exchange.events.v1.envelope_pb2 import EventEnvelope
from exchange.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.topics import LEDGER_EVENTS_TOPIC
from infra.local.kafka_broker import LocalBroker
from infra.local.ports import free_port, wait_for_port
from infra.local.postgres import PostgresDatabase
from ledger.testing import EventStream
from tests.conftest import LEDGER_SERVICE_LOGIN
from tests.integration.ledger.kafka_support import create_topic, publish
from tests.paths import REPO_ROOT


def _migrate_and_start(
    postgres: PostgresDatabase, *extra: str
) -> tuple[subprocess.Popen[bytes], int]:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run(
        [sys.executable, "-m", "ledger.db.migrate", postgres.url()],
        check=True,
        cwd=REPO_ROOT,
        env=environment,
        timeout=60,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ledger.service",
            "--database-url",
            postgres.url(user=LEDGER_SERVICE_LOGIN),
            "--listen",
            f"127.0.0.1:{port}",
            "--core-address",
            "127.0.0.1:1",
            *extra,
        ],
        cwd=REPO_ROOT,
        env=environment,
    )
    return server, port


async def test_migrate_then_serve(postgres: PostgresDatabase, ledger_template: str) -> None:
    assert ledger_template  # the service's login role exists
    server, port = _migrate_and_start(postgres)
    try:
        wait_for_port(port, timeout_seconds=20)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="exchange.ledger.v1.LedgerService")
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            response = await ledger_pb2_grpc.LedgerServiceStub(channel).IngestEvents(
                ledger_pb2.IngestEventsRequest(events=[EventStream().deposit("a", "USDT", 5)]),
                metadata=(("x-exchange-operator-id", "ops-ann"),),
            )
            assert response.results[0].outcome == ledger_pb2.INGEST_OUTCOME_POSTED
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0


async def test_with_a_broker_the_service_publishes_its_events(
    postgres: PostgresDatabase, ledger_template: str, kafka_broker: LocalBroker
) -> None:
    """The launch line of infra/local/components.py (--kafka-bootstrap, --partitions 0, no event
    flags): settlement consumer AND the ledger events publisher run."""
    assert ledger_template
    await create_topic(kafka_broker.bootstrap_servers, partitions=1)
    deposit = EventStream().deposit("a", "USDT", 5)
    await publish(kafka_broker.bootstrap_servers, [deposit], partition=0)
    server, _ = _migrate_and_start(
        postgres, "--kafka-bootstrap", kafka_broker.bootstrap_servers, "--partitions", "0"
    )
    try:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap_servers)
        await consumer.start()
        try:
            partition = TopicPartition(LEDGER_EVENTS_TOPIC, 0)
            async with asyncio.timeout(60):
                while partition not in consumer.assignment():
                    if LEDGER_EVENTS_TOPIC in await consumer.topics():
                        consumer.assign([partition])
                        consumer.seek(partition, 0)
                    else:
                        await asyncio.sleep(0.2)
                records: list[ConsumerRecord[bytes, bytes]] = []
                while not records:
                    records = (await consumer.getmany(partition, timeout_ms=200)).get(partition, [])
        finally:
            await consumer.stop()
        envelope = EventEnvelope()
        envelope.ParseFromString(records[0].value)
        assert envelope.event_id.startswith("ledger:entry-posted:")
        assert envelope.entry_posted.entry.source_event_id == deposit.event_id
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
