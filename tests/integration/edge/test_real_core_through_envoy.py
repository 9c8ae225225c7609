"""The edge in front of the real trading core (`python -m core.service`, WAL on disk):
signed REST placement and cancellation, one account never sees or cancels another's
orders or balances, and an Idempotency-Key retry returns the original order after the
gateway and the core have both restarted."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc import aio

from core.service.testing import ServerProcess, create_btc_usdt, deposit
from infra.local.ports import free_port
from infra.local.redis import RedisServer
from tests.integration.edge.harness import (
    ALICE,
    BOB,
    Edge,
    GatewayProcess,
    edge_parameters,
    start_envoy,
)

USDT = 1_000_000
PRICE = 50_000 * USDT  # quote minor units per whole BTC
QUANTITY = 1_000_000  # 0.01 BTC in base minor units


def _order(client_order_id: str) -> dict[str, object]:
    return {
        "client_order_id": client_order_id,
        "symbol": "BTC-USDT",
        "side": "SIDE_BUY",
        "order_type": "ORDER_TYPE_LIMIT",
        "price": str(PRICE),
        "quantity": str(QUANTITY),
    }


async def _prepare(address: str) -> None:
    async with aio.insecure_channel(address) as channel:
        await create_btc_usdt(channel)
        await deposit(channel, ALICE[2], "USDT", 10_000 * USDT)
        await deposit(channel, BOB[2], "USDT", 20_000 * USDT)


@pytest.fixture
def real_edge(tmp_path: Path) -> Iterator[tuple[Edge, Path, int]]:
    core_port = free_port()
    data_dir = tmp_path / "core"
    with ServerProcess(data_dir, "--listen", f"127.0.0.1:{core_port}") as core:
        asyncio.run(_prepare(core.address))
    with RedisServer() as redis, (tmp_path / "gateway.log").open("wb") as gateway_log:
        gateway = GatewayProcess(redis_url=redis.url, log=gateway_log)
        gateway.start()
        parameters = edge_parameters(
            core_port=core_port,
            gateway=gateway,
            directory=tmp_path,
            access_log_path=str(tmp_path / "access.log"),
        )
        envoy = start_envoy(parameters, tmp_path)
        try:
            yield Edge(envoy=envoy, gateway=gateway, redis=redis), data_dir, core_port
        finally:
            envoy.stop()
            gateway.stop()


def test_signed_orders_isolation_and_idempotency_against_the_real_core(
    real_edge: tuple[Edge, Path, int],
) -> None:
    edge, data_dir, core_port = real_edge
    with ServerProcess(data_dir, "--listen", f"127.0.0.1:{core_port}"):
        placed = edge.signed(
            "POST", "/v1/orders", key=ALICE, body=_order("alice-1"), idempotency_key="alice-1"
        )
        assert placed.status == 200, placed.body
        order = placed.json()["order"]
        assert order["account_id"] == ALICE[2]
        assert order["status"] == "ORDER_STATUS_NEW"
        assert order["price"] == str(PRICE)
        order_path = f"/v1/orders/{order['order_id']}"

        # Bob cannot see, cancel or learn of Alice's order, nor see her balances.
        peek = edge.signed("GET", order_path, key=BOB)
        assert (peek.status, peek.reason) == (404, "ORDER_NOT_FOUND")
        steal = edge.signed(
            "DELETE", order_path + "?request_id=bob-1", key=BOB, idempotency_key="bob-1"
        )
        assert (steal.status, steal.reason) == (404, "ORDER_NOT_FOUND")
        bobs = edge.signed("GET", "/v1/account/balances", key=BOB).json()["balances"]
        assert {balance["asset"]: balance["available"] for balance in bobs}["USDT"] == str(
            20_000 * USDT
        )
        alices = edge.signed("GET", "/v1/account/balances", key=ALICE).json()["balances"]
        alice_usdt = {balance["asset"]: balance for balance in alices}["USDT"]
        assert int(alice_usdt["held"]) > 0  # the open order reserves her quote

        # Insufficient balance is the core's named rejection, through the edge.
        too_big = dict(_order("alice-2"), quantity=str(100 * QUANTITY))
        refused = edge.signed(
            "POST", "/v1/orders", key=ALICE, body=too_big, idempotency_key="alice-2"
        )
        assert (refused.status, refused.reason) == (400, "INSUFFICIENT_BALANCE")

    # Both the gateway and the core restart; the retry returns the original order.
    edge.gateway.stop()
    edge.gateway.start()
    with ServerProcess(data_dir, "--listen", f"127.0.0.1:{core_port}"):
        retried = edge.signed(
            "POST", "/v1/orders", key=ALICE, body=_order("alice-1"), idempotency_key="alice-1"
        )
        assert retried.status == 200, retried.body
        assert retried.json()["order"]["order_id"] == order["order_id"]
        reused = edge.signed(
            "POST", "/v1/orders", key=ALICE, body=_order("alice-3"), idempotency_key="alice-1"
        )
        assert (reused.status, reused.reason) == (409, "IDEMPOTENCY_KEY_REUSED")

        cancelled = edge.signed(
            "DELETE", order_path + "?request_id=cancel-1", key=ALICE, idempotency_key="cancel-1"
        )
        assert cancelled.status == 200, cancelled.body
        assert cancelled.json()["order"]["status"] == "ORDER_STATUS_CANCELLED"
        again = edge.signed(
            "DELETE", order_path + "?request_id=cancel-1", key=ALICE, idempotency_key="cancel-1"
        )
        assert again.status == 200, again.body
        assert again.json() == cancelled.json()
