"""The ledger's REST routes (google.api.http of exchange.ledger.v1.LedgerService) through the
real Envoy + gateway (ext_authz, signed requests) to the real `python -m ledger.service` on
PostgreSQL: a trader sees only their own balances; admin routes refuse a trader with 403
OPERATOR_REQUIRED and work for an operator; a correction needs a second operator (403
CORRECTION_SELF_APPROVAL for the requester), then applies once."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.envoy_config import Endpoint
from infra.local.ports import free_port, wait_for_port
from infra.local.postgres import PostgresCluster
from infra.local.redis import RedisServer
from ledger.db.connection import create_engine
from ledger.settlement import Settlement
from ledger.testing import EventStream
from tests.conftest import LEDGER_SERVICE_LOGIN
from tests.integration.edge.harness import (
    ALICE,
    BOB,
    OPERATOR,
    STATIC_KEYS,
    Edge,
    GatewayProcess,
    edge_parameters,
    start_envoy,
)
from tests.paths import REPO_ROOT

SECOND_OPERATOR = ("ops2", "ops2-secret", "operator-2")
KEYS = f"{STATIC_KEYS},{SECOND_OPERATOR[0]}:{SECOND_OPERATOR[1]}:{SECOND_OPERATOR[2]}:OPERATE"


async def _seed(url: str) -> None:
    engine: AsyncEngine = create_engine(url)
    stream = EventStream()
    try:
        await Settlement(engine).post(
            [
                stream.deposit(ALICE[2], "USDT", 5_000),
                stream.deposit(BOB[2], "USDT", 7_000),
                stream.reserve(BOB[2], "USDT", 1_000),
            ]
        )
    finally:
        await engine.dispose()


@pytest.fixture
def ledger_edge(
    postgres_cluster: PostgresCluster, ledger_template: str, tmp_path: Path
) -> Iterator[Edge]:
    database = postgres_cluster.create_database("ledger_edge", template=ledger_template)
    service_url = database.url(user=LEDGER_SERVICE_LOGIN)
    asyncio.run(_seed(service_url))
    ledger_port = free_port()
    ledger = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ledger.service",
            "--database-url",
            service_url,
            "--listen",
            f"127.0.0.1:{ledger_port}",
            "--core-address",
            "127.0.0.1:1",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=(tmp_path / "ledger.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(ledger_port, timeout_seconds=30)
        with RedisServer() as redis, (tmp_path / "gateway.log").open("wb") as gateway_log:
            gateway = GatewayProcess(
                redis_url=redis.url, log=gateway_log, environment={"EDGE_API_SECRETS": KEYS}
            )
            gateway.start()
            parameters = dataclasses.replace(
                edge_parameters(
                    core_port=free_port(),  # nothing there: these routes never reach the core
                    gateway=gateway,
                    directory=tmp_path,
                    access_log_path=str(tmp_path / "access.log"),
                ),
                ledger=Endpoint("127.0.0.1", ledger_port),
            )
            envoy = start_envoy(parameters, tmp_path)
            try:
                yield Edge(envoy=envoy, gateway=gateway, redis=redis)
            finally:
                envoy.stop()
                gateway.stop()
    finally:
        ledger.send_signal(signal.SIGTERM)
        ledger.wait(timeout=20)
        postgres_cluster.drop_database(database.name)


def _balances(edge: Edge, key: tuple[str, str, str], query: str = "") -> dict[tuple[str, str], int]:
    answer = edge.signed("GET", "/v1/balances" + query, key=key)
    assert answer.status == 200, answer.body
    return {
        (balance["account"]["owner_id"], balance["account"]["kind"]): int(
            balance.get("balance", "0")
        )  # 0 is omitted in JSON
        for balance in answer.json().get("balances", [])
    }


def test_traders_see_only_their_own_balances(ledger_edge: Edge) -> None:
    assert _balances(ledger_edge, ALICE) == {(ALICE[2], "ACCOUNT_KIND_AVAILABLE"): 5_000}
    assert _balances(ledger_edge, BOB) == {
        (BOB[2], "ACCOUNT_KIND_AVAILABLE"): 6_000,
        (BOB[2], "ACCOUNT_KIND_HELD"): 1_000,
    }
    peek = ledger_edge.signed("GET", f"/v1/balances?owner_id={BOB[2]}", key=ALICE)
    assert (peek.status, peek.reason) == (403, "PERMISSION_DENIED")
    # /v1/balances is a READ route: the edge passes the key's account, never an operator.
    operator = ledger_edge.signed("GET", f"/v1/balances?owner_id={ALICE[2]}", key=OPERATOR)
    assert (operator.status, operator.reason) == (403, "PERMISSION_DENIED")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/admin/entries", b""),
        ("POST", "/v1/admin/invariants/check", {}),
        ("POST", "/v1/admin/rebuild-balances", {"dry_run": True}),
        ("GET", "/v1/admin/corrections", b""),
        ("POST", "/v1/admin/corrections/requests", {"request_id": "r", "reason": "x"}),
    ],
)
def test_admin_routes_refuse_a_trader(
    ledger_edge: Edge, method: str, path: str, body: bytes | dict[str, object]
) -> None:
    answer = ledger_edge.signed(
        method, path, key=ALICE, body=body, idempotency_key="k" if method == "POST" else None
    )
    assert (answer.status, answer.reason) == (403, "OPERATOR_REQUIRED"), answer.body


def test_operators_read_entries_check_invariants_and_correct_with_two_people(
    ledger_edge: Edge,
) -> None:
    entries = ledger_edge.signed("GET", "/v1/admin/entries", key=OPERATOR)
    assert entries.status == 200, entries.body
    listed = entries.json()["entries"]
    assert len(listed) == 3
    reserve = next(entry for entry in listed if entry["kind"] == "ENTRY_KIND_RESERVE")
    one = ledger_edge.signed("GET", f"/v1/admin/entries/{reserve['entry_id']}", key=OPERATOR)
    assert one.status == 200, one.body
    assert one.json()["entry"]["entry_id"] == reserve["entry_id"]

    checked = ledger_edge.signed(
        "POST", "/v1/admin/invariants/check", key=OPERATOR, body={}, idempotency_key="inv-1"
    )
    assert checked.status == 200, checked.body
    assert checked.json().get("violations", []) == []

    requested = ledger_edge.signed(
        "POST",
        "/v1/admin/corrections/requests",
        key=OPERATOR,
        body={
            "request_id": "fix-1",
            "reason": "reserve posted twice",
            "reverse_entry_id": reserve["entry_id"],
        },
        idempotency_key="fix-1",
    )
    assert requested.status == 200, requested.body
    correction = requested.json()["correction"]
    assert correction["status"] == "CORRECTION_STATUS_PENDING_APPROVAL"
    assert correction["requested_by"] == OPERATOR[2]
    path = f"/v1/admin/corrections/{correction['correction_id']}"

    early = ledger_edge.signed("POST", path + "/apply", key=OPERATOR, body={}, idempotency_key="a0")
    assert (early.status, early.reason) == (400, "CORRECTION_NOT_APPROVED"), early.body
    self_approval = ledger_edge.signed(
        "POST", path + "/approve", key=OPERATOR, body={}, idempotency_key="ap-1"
    )
    assert (self_approval.status, self_approval.reason) == (403, "CORRECTION_SELF_APPROVAL")
    by_trader = ledger_edge.signed("POST", path + "/approve", key=BOB, body={}, idempotency_key="b")
    assert (by_trader.status, by_trader.reason) == (403, "OPERATOR_REQUIRED")

    approved = ledger_edge.signed(
        "POST", path + "/approve", key=SECOND_OPERATOR, body={}, idempotency_key="ap-2"
    )
    assert approved.status == 200, approved.body
    assert approved.json()["correction"]["approved_by"] == SECOND_OPERATOR[2]
    applied = ledger_edge.signed(
        "POST", path + "/apply", key=SECOND_OPERATOR, body={}, idempotency_key="apply-1"
    )
    assert applied.status == 200, applied.body
    assert applied.json()["correction"]["status"] == "CORRECTION_STATUS_APPLIED"
    again = ledger_edge.signed(
        "POST", path + "/apply", key=OPERATOR, body={}, idempotency_key="apply-2"
    )
    assert again.status == 200, again.body
    assert (
        again.json()["correction"]["applied_entry_ids"]
        == (applied.json()["correction"]["applied_entry_ids"])
    )
    # The reversal moved Bob's 1,000 back from held to available, once.
    assert _balances(ledger_edge, BOB) == {
        (BOB[2], "ACCOUNT_KIND_AVAILABLE"): 7_000,
        (BOB[2], "ACCOUNT_KIND_HELD"): 0,
    }
    fetched = ledger_edge.signed("GET", path, key=OPERATOR)
    assert fetched.json()["correction"]["status"] == "CORRECTION_STATUS_APPLIED"
