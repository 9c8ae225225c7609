"""Keyed commands retried across a SIGKILL of the real core process (python -m core.service).

Cancel, amend, cancel-all, canary trade and market mode: each is acknowledged, the core is
killed (recovery from the WAL alone, or from a snapshot taken in between plus the WAL tail),
restarted on the same data dir, and each command is retried with the same `request_id`: the
response equals the first one, the state hash and the balances show every command applied once
(ADR 0016). The same key with another body is refused IDEMPOTENCY_KEY_REUSED.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from exchange.common.v1 import types_pb2
from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc
from google.protobuf.message import Message
from grpc import aio

from core.engine.testing import BTC, USDT
from core.service.admin import CANARY_MAKER_ACCOUNT_ID, CANARY_TAKER_ACCOUNT_ID
from core.service.testing import ServerProcess, create_btc_usdt, deposit, operator, trader
from tests.integration.core.service.service_harness import (
    LOT,
    PRICE,
    expect_error,
    limit_request,
)

ALICE = trader("alice")
BOB = trader("bob")
OPERATOR = operator()


@dataclass
class Acknowledged:
    """The keyed requests, their first responses, and what the state was after them."""

    requests: dict[str, Message]
    responses: dict[str, Message]
    later_order_id: str  # placed after the keyed commands
    state_hash: str
    balances: list[tuple[str, str, int, int]]


_METHODS = {
    "cancel": ("TradingService", "CancelOrder", ALICE),
    "amend": ("TradingService", "AmendOrder", ALICE),
    "amend-crossing": ("TradingService", "AmendOrder", ALICE),
    "cancel-all": ("TradingService", "CancelAllOrders", ALICE),
    "canary": ("CoreAdminService", "PlaceCanaryTrade", OPERATOR),
    "mode": ("CoreAdminService", "SetMarketMode", OPERATOR),
}


async def _call(channel: aio.Channel, name: str, request: Message) -> Message:
    service, method, metadata = _METHODS[name]
    stub: object = (
        trading_pb2_grpc.TradingServiceStub(channel)
        if service == "TradingService"
        else core_admin_pb2_grpc.CoreAdminServiceStub(channel)
    )
    response: Message = await getattr(stub, method)(request, metadata=metadata)
    return response


async def _observe(channel: aio.Channel) -> tuple[str, list[tuple[str, str, int, int]]]:
    admin = core_admin_pb2_grpc.CoreAdminServiceStub(channel)
    state = await admin.GetStateHash(core_admin_pb2.GetStateHashRequest(), metadata=OPERATOR)
    trading = trading_pb2_grpc.TradingServiceStub(channel)
    balances = []
    for name, metadata in (
        ("alice", ALICE),
        ("bob", BOB),
        (CANARY_TAKER_ACCOUNT_ID, trader(CANARY_TAKER_ACCOUNT_ID)),
    ):
        answer = await trading.ListAccountBalances(
            trading_pb2.ListAccountBalancesRequest(), metadata=metadata
        )
        balances += [(name, b.asset, b.available, b.held) for b in answer.balances]
    return state.state_hash, sorted(balances)


async def _acknowledge(address: str, *, snapshot_between: bool) -> Acknowledged:
    async with aio.insecure_channel(address) as channel:
        await create_btc_usdt(channel)
        await deposit(channel, "alice", "USDT", 1_000_000 * USDT)
        await deposit(channel, "bob", "BTC", BTC)
        await deposit(channel, CANARY_MAKER_ACCOUNT_ID, "BTC", BTC)
        await deposit(channel, CANARY_TAKER_ACCOUNT_ID, "USDT", 1_000_000 * USDT)
        trading = trading_pb2_grpc.TradingServiceStub(channel)
        buy = types_pb2.SIDE_BUY
        ids = []
        for index in range(5):
            placed = await trading.PlaceOrder(
                limit_request(f"b{index}", buy, 4 * LOT, PRICE - (index + 1) * USDT), metadata=ALICE
            )
            ids.append(placed.order.order_id)
        await trading.PlaceOrder(
            limit_request("ask", types_pb2.SIDE_SELL, LOT, PRICE + USDT), metadata=BOB
        )
        requests: dict[str, Message] = {
            "cancel": trading_pb2.CancelOrderRequest(order_id=ids[0], request_id="k-cancel"),
            # Smaller at the same price: keeps priority; 0 keeps the price.
            "amend": trading_pb2.AmendOrderRequest(
                order_id=ids[1], new_quantity=2 * LOT, request_id="k-amend"
            ),
            # Up to Bob's ask: trades one lot, so the answer carries a fill.
            "amend-crossing": trading_pb2.AmendOrderRequest(
                order_id=ids[2], new_price=PRICE + USDT, request_id="k-cross"
            ),
            "cancel-all": trading_pb2.CancelAllOrdersRequest(symbol="BTC-USDT", request_id="k-all"),
            # Prices from the book: a retry must resubmit the logged orders, not new ones.
            "canary": core_admin_pb2.PlaceCanaryTradeRequest(
                symbol="BTC-USDT", request_id="k-canary"
            ),
            "mode": core_admin_pb2.SetMarketModeRequest(
                symbol="BTC-USDT", mode=types_pb2.MARKET_MODE_CANCEL_ONLY, request_id="k-mode"
            ),
        }
        responses: dict[str, Message] = {}
        for name, request in requests.items():
            responses[name] = await _call(channel, name, request)
            if snapshot_between and name == "amend-crossing":
                admin = core_admin_pb2_grpc.CoreAdminServiceStub(channel)
                await admin.TakeSnapshot(core_admin_pb2.TakeSnapshotRequest(), metadata=OPERATOR)
        assert responses["amend"].priority_kept  # type: ignore[attr-defined]
        assert len(responses["amend-crossing"].fills) == 1  # type: ignore[attr-defined]
        assert len(responses["cancel-all"].cancelled_orders) == 4  # type: ignore[attr-defined]
        # After the commands: the market back to normal and a new order, which a cancel-all
        # applied twice would cancel and a mode change applied twice would block.
        admin = core_admin_pb2_grpc.CoreAdminServiceStub(channel)
        await admin.SetMarketMode(
            core_admin_pb2.SetMarketModeRequest(
                symbol="BTC-USDT", mode=types_pb2.MARKET_MODE_NORMAL, request_id="k-normal"
            ),
            metadata=OPERATOR,
        )
        later = await trading.PlaceOrder(
            limit_request("later", buy, LOT, PRICE - 10 * USDT), metadata=ALICE
        )
        state_hash, balances = await _observe(channel)
        return Acknowledged(requests, responses, later.order.order_id, state_hash, balances)


async def _retry_after_restart(address: str, acknowledged: Acknowledged) -> str:
    """Retry everything; the state hash afterwards (the refused reuses advanced the seq)."""
    async with aio.insecure_channel(address) as channel:
        assert await _observe(channel) == (acknowledged.state_hash, acknowledged.balances)
        for name, request in acknowledged.requests.items():
            retried = await _call(channel, name, request)
            first = acknowledged.responses[name]
            if name.startswith("amend"):
                # The amended order was cancelled since: its update time is the cancel's; all
                # else is as the amend left it (ADR 0016, limits).
                assert retried.order.updated_at != first.order.updated_at  # type: ignore[attr-defined]
                retried.order.ClearField("updated_at")  # type: ignore[attr-defined]
                first = type(first).FromString(first.SerializeToString())
                first.order.ClearField("updated_at")  # type: ignore[attr-defined]
            assert retried == first, name
        # Nothing applied twice: same state, the later order still open, the market normal.
        assert await _observe(channel) == (acknowledged.state_hash, acknowledged.balances)
        trading = trading_pb2_grpc.TradingServiceStub(channel)
        later = await trading.GetOrder(
            trading_pb2.GetOrderRequest(order_id=acknowledged.later_order_id), metadata=ALICE
        )
        assert later.order.status == types_pb2.ORDER_STATUS_NEW
        # The same key with another body is refused by name, also after the restart.
        await expect_error(
            trading.CancelOrder(
                trading_pb2.CancelOrderRequest(
                    order_id=acknowledged.later_order_id, request_id="k-cancel"
                ),
                metadata=ALICE,
            ),
            grpc.StatusCode.ALREADY_EXISTS,
            "IDEMPOTENCY_KEY_REUSED",
        )
        admin = core_admin_pb2_grpc.CoreAdminServiceStub(channel)
        await expect_error(
            admin.SetMarketMode(
                core_admin_pb2.SetMarketModeRequest(
                    symbol="BTC-USDT", mode=types_pb2.MARKET_MODE_HALTED, request_id="k-mode"
                ),
                metadata=OPERATOR,
            ),
            grpc.StatusCode.ALREADY_EXISTS,
            "IDEMPOTENCY_KEY_REUSED",
        )
        state_hash, balances = await _observe(channel)
        assert balances == acknowledged.balances
        return state_hash


@pytest.mark.parametrize("snapshot_between", [False, True], ids=["wal-only", "snapshot+wal"])
async def test_keyed_commands_answer_the_same_after_a_kill(
    tmp_path: Path, *, snapshot_between: bool
) -> None:
    data_dir = tmp_path / "core"
    with ServerProcess(data_dir) as server:
        acknowledged = await _acknowledge(server.address, snapshot_between=snapshot_between)
        os.kill(server.pid, signal.SIGKILL)
        assert server.stop() == -signal.SIGKILL
    assert bool(list(data_dir.glob("snapshot-*.bin"))) is snapshot_between
    with ServerProcess(data_dir) as server:
        acknowledged.state_hash = await _retry_after_restart(server.address, acknowledged)
        # And once more, killed after the retries (logged: duplicates and refused reuses).
        os.kill(server.pid, signal.SIGKILL)
        assert server.stop() == -signal.SIGKILL
    with ServerProcess(data_dir) as server:
        await _retry_after_restart(server.address, acknowledged)
