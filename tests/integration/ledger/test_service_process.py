"""`python -m ledger.db.migrate` then `python -m ledger.service`: a real process that serves
gRPC, reports healthy, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import grpc
from exchange.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infra.local.ports import free_port, wait_for_port
from infra.local.postgres import PostgresDatabase
from ledger.testing import EventStream
from tests.conftest import LEDGER_SERVICE_LOGIN
from tests.paths import REPO_ROOT


async def test_migrate_then_serve(postgres: PostgresDatabase, ledger_template: str) -> None:
    assert ledger_template  # the service's login role exists
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
        ],
        cwd=REPO_ROOT,
        env=environment,
    )
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
