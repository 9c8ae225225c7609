"""The real core process answers request bytes that do not decode - invalid UTF-8 in any
string field, truncated or invalid wire data - on every method with INVALID_ARGUMENT and an
ErrorInfo reason (ENCODING_INVALID / MALFORMED_REQUEST), never UNKNOWN (ADR 0015); and an
identifier holding a control character is FIELD_INVALID before anything is logged."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from exchange.common.v1 import types_pb2
from exchange.core.v1 import core_admin_pb2  # noqa: F401 - registers the service's descriptor
from exchange.funding.v1 import funding_pb2  # noqa: F401
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc
from grpc import aio

from core.service.testing import ServerProcess, create_btc_usdt, trader
from tests.support.grpc_hostile import error_reason, is_fault, probe

CORE_SERVICES = [
    "exchange.trading.v1.TradingService",
    "exchange.funding.v1.FundingService",
    "exchange.core.v1.CoreAdminService",
]


def test_every_core_method_refuses_undecodable_bytes_with_a_reason(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "core") as core:
        outcomes = probe(core.address, CORE_SERVICES)
    assert len({outcome.method for outcome in outcomes}) >= 20
    faults = [outcome for outcome in outcomes if is_fault(outcome)]
    assert faults == []
    # StreamOrders asks for the caller's identity before it reads a message.
    refused = {
        outcome.reason
        for outcome in outcomes
        if outcome.case != "invalid-tag" and not outcome.method.endswith("StreamOrders")
    }
    assert refused == {"ENCODING_INVALID", "MALFORMED_REQUEST"}
    utf8 = [
        outcome
        for outcome in outcomes
        if outcome.case.startswith("invalid-utf8") and not outcome.method.endswith("StreamOrders")
    ]
    assert utf8
    assert {outcome.reason for outcome in utf8} == {"ENCODING_INVALID"}


def test_control_characters_in_identifiers_are_field_invalid(tmp_path: Path) -> None:
    async def run(address: str) -> list[tuple[grpc.StatusCode, str]]:
        answers: list[tuple[grpc.StatusCode, str]] = []
        async with aio.insecure_channel(address) as channel:
            await create_btc_usdt(channel)
            stub = trading_pb2_grpc.TradingServiceStub(channel)
            for client_order_id in ("a\x00b", "a\r\nINFO forged", "a\x1b[31m", "a b", "é"):
                request = trading_pb2.PlaceOrderRequest(
                    client_order_id=client_order_id,
                    symbol="BTC-USDT",
                    side=types_pb2.SIDE_BUY,
                    order_type=types_pb2.ORDER_TYPE_LIMIT,
                    price=5_000_000_000,
                    quantity=1_000_000,
                )
                try:
                    await stub.PlaceOrder(request, metadata=trader("acct-nul"))
                except aio.AioRpcError as error:
                    answers.append((error.code(), error_reason(error)))
                else:
                    answers.append((grpc.StatusCode.OK, ""))
        return answers

    with ServerProcess(tmp_path / "core") as core:
        answers = asyncio.run(run(core.address))
    assert answers == [(grpc.StatusCode.INVALID_ARGUMENT, "FIELD_INVALID")] * 5


def test_an_undecodable_message_in_an_order_stream_ends_it_with_a_reason(tmp_path: Path) -> None:
    """StreamOrders reads its requests in a task of its own: the refusal still comes back as
    one INVALID_ARGUMENT with a reason (it was INTERNAL, now and then, when that task aborted
    the call itself), after the answers to the batches before it."""
    good = trading_pb2.StreamOrdersRequest().SerializeToString()
    bad = b"\x08\xff\xff"  # a truncated varint

    async def run(address: str) -> list[tuple[int, grpc.StatusCode, str]]:
        outcomes: list[tuple[int, grpc.StatusCode, str]] = []
        async with aio.insecure_channel(address) as channel:
            stream: aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
                "/exchange.trading.v1.TradingService/StreamOrders"
            )
            for _ in range(50):
                answers = 0
                call = stream(iter([good, bad]), metadata=trader("acct-stream"), timeout=10)
                try:
                    async for _answer in call:
                        answers += 1
                except aio.AioRpcError as error:
                    outcomes.append((answers, error.code(), error_reason(error)))
                else:
                    outcomes.append((answers, grpc.StatusCode.OK, ""))
        return outcomes

    with ServerProcess(tmp_path / "core") as core:
        outcomes = asyncio.run(run(core.address))
    assert outcomes == [(1, grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")] * 50
