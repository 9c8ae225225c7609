"""The order history survives restarts: `python -m core.service` killed (SIGKILL) or stopped
(SIGTERM) after orders closed, with snapshots taken between them, answers GetOrder (by id and
by client order id), ListOrders, ListFills and retried PlaceOrders exactly as before.

What the test can catch: a history seeded only from the engine's books (closed orders missing,
retries answered with empty orders), a checkpoint taken at the wrong seq (orders of the tail
twice or missing), fills lost across a snapshot, a wrong last_event_engine_seq.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from exchange.common.v1 import types_pb2
from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc
from google.protobuf.message import Message
from grpc import aio

from core.engine.testing import BTC, USDT
from core.service.testing import ServerProcess, create_btc_usdt, deposit, operator, trader
from tests.integration.core.service.service_harness import LOT, PRICE

ACCOUNTS = ("alice", "bob")
BUY, SELL = types_pb2.SIDE_BUY, types_pb2.SIDE_SELL
LIMIT, MARKET = types_pb2.ORDER_TYPE_LIMIT, types_pb2.ORDER_TYPE_MARKET
IOC = types_pb2.TIME_IN_FORCE_IOC


def _request(
    client_order_id: str,
    side: types_pb2.Side.ValueType,
    quantity: int,
    price: int,
    *,
    time_in_force: types_pb2.TimeInForce.ValueType = types_pb2.TIME_IN_FORCE_GTC,
) -> trading_pb2.PlaceOrderRequest:
    return trading_pb2.PlaceOrderRequest(
        client_order_id=client_order_id,
        symbol="BTC-USDT",
        side=side,
        order_type=LIMIT,
        quantity=quantity,
        price=price,
        time_in_force=time_in_force,
    )


@dataclass
class Seen:
    """What the clients saw before the restart."""

    placed: dict[str, tuple[str, trading_pb2.PlaceOrderRequest, trading_pb2.PlaceOrderResponse]] = (
        field(default_factory=dict)
    )
    retried: dict[str, trading_pb2.PlaceOrderResponse] = field(default_factory=dict)
    views: dict[str, list[Message]] = field(default_factory=dict)
    balances: core_admin_pb2.GetEngineBalancesResponse = field(
        default_factory=core_admin_pb2.GetEngineBalancesResponse
    )


async def _snapshot(channel: aio.Channel) -> None:
    admin = core_admin_pb2_grpc.CoreAdminServiceStub(channel)
    await admin.TakeSnapshot(core_admin_pb2.TakeSnapshotRequest(), metadata=operator())


async def _trade(address: str) -> Seen:
    """Orders of every kind of ending, a snapshot after each phase but the last."""
    seen = Seen()
    async with aio.insecure_channel(address) as channel:
        await create_btc_usdt(channel)
        for account_id in ACCOUNTS:
            await deposit(channel, account_id, "BTC", 10 * BTC)
            await deposit(channel, account_id, "USDT", 1_000_000 * USDT)
        trading = trading_pb2_grpc.TradingServiceStub(channel)

        async def place(account_id: str, request: trading_pb2.PlaceOrderRequest) -> str:
            response = await trading.PlaceOrder(request, metadata=trader(account_id))
            seen.placed[request.client_order_id] = (account_id, request, response)
            return response.order.order_id

        async def cancel(account_id: str, order_id: str, request_id: str) -> None:
            await trading.CancelOrder(
                trading_pb2.CancelOrderRequest(order_id=order_id, request_id=request_id),
                metadata=trader(account_id),
            )

        phases = [
            # filled both sides, a cancelled order, an IOC that expires unfilled
            [
                ("bob", _request("s1", SELL, 2 * LOT, PRICE)),
                ("alice", _request("b1", BUY, 2 * LOT, PRICE)),
                ("alice", _request("c1", BUY, LOT, PRICE - 10 * USDT)),
                ("alice", _request("i1", BUY, LOT, PRICE - 20 * USDT, time_in_force=IOC)),
            ],
            # a taker filled across two makers, one of them partly, then cancelled
            [
                ("bob", _request("s3", SELL, LOT, PRICE + USDT)),
                ("bob", _request("s2", SELL, 3 * LOT, PRICE + 2 * USDT)),
                ("alice", _request("b3", BUY, 2 * LOT, PRICE + 2 * USDT, time_in_force=IOC)),
            ],
            # after the last snapshot: only the WAL tail has these
            [
                ("alice", _request("s4", SELL, LOT, PRICE - 5 * USDT)),
                ("bob", _request("b4", BUY, 2 * LOT, PRICE - 5 * USDT, time_in_force=IOC)),
                ("bob", _request("o4", BUY, LOT, PRICE - 30 * USDT)),  # stays open
            ],
        ]
        for number, phase in enumerate(phases):
            for account_id, request in phase:
                await place(account_id, request)
            if number == 0:
                await cancel("alice", seen.placed["c1"][2].order.order_id, "cancel-c1")
            if number == 1:
                await cancel("bob", seen.placed["s2"][2].order.order_id, "cancel-s2")
            if number < len(phases) - 1:
                await _snapshot(channel)
        # A retry as the last command: no event, but it takes an engine seq.
        _, request, _ = seen.placed["o4"]
        await trading.PlaceOrder(request, metadata=trader("bob"))
        seen.retried, seen.views = await _answers(channel, seen)
        admin = core_admin_pb2_grpc.CoreAdminServiceStub(channel)
        seen.balances = await admin.GetEngineBalances(
            core_admin_pb2.GetEngineBalancesRequest(), metadata=operator()
        )
    return seen


async def _answers(
    channel: aio.Channel, seen: Seen
) -> tuple[dict[str, trading_pb2.PlaceOrderResponse], dict[str, list[Message]]]:
    """Every retried PlaceOrder, and GetOrder / ListOrders / ListFills of every account."""
    trading = trading_pb2_grpc.TradingServiceStub(channel)
    retried = {}
    views: dict[str, list[Message]] = {}
    for client_order_id, (account_id, request, response) in seen.placed.items():
        metadata = trader(account_id)
        retried[client_order_id] = await trading.PlaceOrder(request, metadata=metadata)
        views[f"get {client_order_id}"] = [
            await trading.GetOrder(
                trading_pb2.GetOrderRequest(client_order_id=client_order_id), metadata=metadata
            ),
            await trading.GetOrder(
                trading_pb2.GetOrderRequest(order_id=response.order.order_id), metadata=metadata
            ),
        ]
    for account_id in ACCOUNTS:
        metadata = trader(account_id)
        views[f"list {account_id}"] = [
            await trading.ListOrders(trading_pb2.ListOrdersRequest(), metadata=metadata),
            await trading.ListFills(trading_pb2.ListFillsRequest(), metadata=metadata),
        ]
    return retried, views


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM])
async def test_history_and_retries_survive_a_restart(tmp_path: Path, stop_signal: int) -> None:
    data_dir = tmp_path / "core"
    with ServerProcess(data_dir, "--snapshot-every", "0") as server:
        seen = await _trade(server.address)
        os.kill(server.pid, stop_signal)
        assert server.stop() == (-signal.SIGKILL if stop_signal == signal.SIGKILL else 0)
    assert sorted(path.name for path in data_dir.glob("history-*.bin")), "no checkpoint written"
    placed = seen.placed
    statuses = {key: response.order.status for key, (_, _, response) in placed.items()}
    assert statuses["b1"] == types_pb2.ORDER_STATUS_FILLED
    assert statuses["i1"] == types_pb2.ORDER_STATUS_EXPIRED
    assert statuses["b3"] == types_pb2.ORDER_STATUS_FILLED
    alice_fills = seen.views["list alice"][1]
    assert isinstance(alice_fills, trading_pb2.ListFillsResponse)
    assert len(alice_fills.fills) == 4  # b1, b3 (two makers), s4

    with ServerProcess(data_dir, "--snapshot-every", "0") as server:
        async with aio.insecure_channel(server.address) as channel:
            retried, views = await _answers(channel, seen)
            admin = core_admin_pb2_grpc.CoreAdminServiceStub(channel)
            balances = await admin.GetEngineBalances(
                core_admin_pb2.GetEngineBalancesRequest(at_engine_seq=seen.balances.engine_seq),
                metadata=operator(),
            )
    assert views == seen.views
    assert retried == seen.retried
    for client_order_id in ("s1", "b1", "i1", "b3", "s4", "b4", "o4"):  # unchanged since placed
        assert retried[client_order_id] == placed[client_order_id][2], client_order_id
    assert balances.last_event_engine_seq == seen.balances.last_event_engine_seq
    assert 0 < balances.last_event_engine_seq < seen.balances.engine_seq  # the retry: no event
