"""A real CoreService on a loopback port with real WAL files, and assertion helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from exchange.core.v1 import core_admin_pb2_grpc
from exchange.funding.v1 import funding_pb2_grpc
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status

from core.engine.testing import BTC, USDT
from core.service import CoreService, ServiceConfig
from core.service.testing import create_btc_usdt, deposit, trader

PRICE = 50_000 * USDT
LOT = BTC // 10_000


def limit_request(
    client_order_id: str, side: int, quantity: int, price: int, **fields: Any
) -> trading_pb2.PlaceOrderRequest:
    """A BTC-USDT PlaceOrderRequest, LIMIT unless `order_type` says otherwise."""
    return trading_pb2.PlaceOrderRequest(
        client_order_id=client_order_id,
        symbol="BTC-USDT",
        side=side,  # type: ignore[arg-type]
        order_type=fields.pop("order_type", 1),
        quantity=quantity,
        price=price,
        **fields,
    )


@dataclass
class Harness:
    core: CoreService
    channel: aio.Channel
    trading: trading_pb2_grpc.TradingServiceAsyncStub
    funding: funding_pb2_grpc.FundingServiceAsyncStub
    admin: core_admin_pb2_grpc.CoreAdminServiceAsyncStub

    async def place(
        self,
        account_id: str,
        client_order_id: str,
        side: int,
        quantity: int,
        price: int,
        **fields: Any,
    ) -> trading_pb2.PlaceOrderResponse:
        request = limit_request(client_order_id, side, quantity, price, **fields)
        response: trading_pb2.PlaceOrderResponse = await self.trading.PlaceOrder(
            request, metadata=trader(account_id)
        )
        return response


async def start_harness(
    data_dir: Path, *, broker: str | None = None, shard_id: str = "core-0"
) -> Harness:
    core = CoreService(
        ServiceConfig(
            data_dir=data_dir,
            listen="127.0.0.1:0",
            shard_id=shard_id,
            snapshot_on_shutdown=False,
            tune_garbage_collector=False,
            broker=broker,
        )
    )
    port = await core.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    return Harness(
        core=core,
        channel=channel,
        trading=trading_pb2_grpc.TradingServiceStub(channel),
        funding=funding_pb2_grpc.FundingServiceStub(channel),
        admin=core_admin_pb2_grpc.CoreAdminServiceStub(channel),
    )


async def funded_harness(data_dir: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(data_dir)
    try:
        await create_btc_usdt(harness.channel)
        for account_id in ("alice", "bob"):
            await deposit(harness.channel, account_id, "BTC", 10 * BTC)
            await deposit(harness.channel, account_id, "USDT", 1_000_000 * USDT)
        yield harness
    finally:
        await harness.channel.close()
        await harness.core.stop()


def error_info(error: aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)
    assert status is not None, f"no rich status in {error!r}"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


async def expect_error(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value
    info = error_info(caught.value)
    assert info.domain == "exchange"
    assert info.reason == reason, (info, caught.value.details())
    return caught.value
