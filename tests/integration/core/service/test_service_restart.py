"""`python -m core.service` restarted on the same data dir: state and idempotency survive."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import grpc
from exchange.common.v1 import types_pb2
from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc
from grpc import aio

from core.engine.testing import BTC, USDT
from core.service.testing import ServerProcess, create_btc_usdt, deposit, operator, trader
from tests.integration.core.service.service_harness import LOT, PRICE, expect_error

ALICE = trader("alice")


def _place(client_order_id: str, quantity: int) -> trading_pb2.PlaceOrderRequest:
    return trading_pb2.PlaceOrderRequest(
        client_order_id=client_order_id,
        symbol="BTC-USDT",
        side=types_pb2.SIDE_BUY,
        order_type=types_pb2.ORDER_TYPE_LIMIT,
        quantity=quantity,
        price=PRICE - USDT,
    )


async def _state(address: str) -> tuple[str, list[tuple[str, int, int]]]:
    async with aio.insecure_channel(address) as channel:
        admin = core_admin_pb2_grpc.CoreAdminServiceStub(channel)
        state = await admin.GetStateHash(core_admin_pb2.GetStateHashRequest(), metadata=operator())
        trading = trading_pb2_grpc.TradingServiceStub(channel)
        balances = await trading.ListAccountBalances(
            trading_pb2.ListAccountBalancesRequest(), metadata=ALICE
        )
        return state.state_hash, [(b.asset, b.available, b.held) for b in balances.balances]


async def _check_after_restart(
    address: str, order_ids: tuple[str, str], expected: tuple[str, list[tuple[str, int, int]]]
) -> None:
    order_id, gone_id = order_ids
    assert await _state(address) == expected
    async with aio.insecure_channel(address) as channel:
        trading = trading_pb2_grpc.TradingServiceStub(channel)
        got = await trading.GetOrder(
            trading_pb2.GetOrderRequest(client_order_id="keep"), metadata=ALICE
        )
        assert got.order.order_id == order_id
        assert got.order.status == types_pb2.ORDER_STATUS_NEW
        retried = await trading.PlaceOrder(_place("keep", 3 * LOT), metadata=ALICE)
        assert retried.order.order_id == order_id
        await expect_error(
            trading.PlaceOrder(_place("keep", 4 * LOT), metadata=ALICE),
            grpc.StatusCode.ALREADY_EXISTS,
            "DUPLICATE_CLIENT_ORDER_ID",
        )
        # A closed order from before the restart: the engine remembers its final status by id
        # (not by client order id: core/service/README.md, limits).
        cancelled = await trading.GetOrder(
            trading_pb2.GetOrderRequest(order_id=gone_id), metadata=ALICE
        )
        assert cancelled.order.status == types_pb2.ORDER_STATUS_CANCELLED


async def _prepare(address: str) -> tuple[str, str]:
    async with aio.insecure_channel(address) as channel:
        await create_btc_usdt(channel)
        await deposit(channel, "alice", "USDT", 1_000_000 * USDT)
        await deposit(channel, "alice", "BTC", BTC)
        trading = trading_pb2_grpc.TradingServiceStub(channel)
        kept = await trading.PlaceOrder(_place("keep", 3 * LOT), metadata=ALICE)
        gone = await trading.PlaceOrder(_place("gone", LOT), metadata=ALICE)
        await trading.CancelOrder(
            trading_pb2.CancelOrderRequest(order_id=gone.order.order_id, request_id="c"),
            metadata=ALICE,
        )
        return kept.order.order_id, gone.order.order_id


async def test_state_and_idempotency_survive_a_graceful_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "core"
    with ServerProcess(data_dir) as server:
        order_ids = await _prepare(server.address)
        expected = await _state(server.address)
        assert server.stop() == 0
    assert list(data_dir.glob("snapshot-*.bin")), "the shutdown snapshot was not written"
    with ServerProcess(data_dir) as server:
        await _check_after_restart(server.address, order_ids, expected)


async def test_state_and_idempotency_survive_a_kill(tmp_path: Path) -> None:
    data_dir = tmp_path / "core"
    with ServerProcess(data_dir) as server:
        order_ids = await _prepare(server.address)
        expected = await _state(server.address)
        os.kill(server.pid, signal.SIGKILL)
        assert server.stop() == -signal.SIGKILL
    assert not list(data_dir.glob("snapshot-*.bin"))  # recovery is from the WAL alone
    with ServerProcess(data_dir) as server:
        await _check_after_restart(server.address, order_ids, expected)
