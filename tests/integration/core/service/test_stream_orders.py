"""StreamOrders: batches in, one answer per batch, per-command results in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from exchange.common.v1 import errors_pb2, types_pb2
from exchange.trading.v1 import trading_pb2

from core.engine.testing import USDT
from core.service.testing import trader
from tests.integration.core.service.service_harness import (
    LOT,
    PRICE,
    Harness,
    expect_error,
    limit_request,
)

BUY = types_pb2.SIDE_BUY
SELL = types_pb2.SIDE_SELL


def _place(client_order_id: str, side: int, quantity: int, price: int) -> trading_pb2.OrderCommand:
    return trading_pb2.OrderCommand(place=limit_request(client_order_id, side, quantity, price))


async def _batches(
    *batches: trading_pb2.StreamOrdersRequest,
) -> AsyncIterator[trading_pb2.StreamOrdersRequest]:
    for batch in batches:
        yield batch


async def test_a_mixed_batch_answers_every_command_in_order(service: Harness) -> None:
    await service.place("bob", "bob-ask", SELL, 2 * LOT, PRICE)
    first = trading_pb2.StreamOrdersRequest(
        batch_id="b-1",
        commands=[
            _place("s-1", BUY, LOT, PRICE - 10 * USDT),  # rests
            _place("", BUY, LOT, PRICE),  # no key: refused before logging
            _place("s-3", BUY, LOT, PRICE + 1),  # engine: tick violation
            _place("s-4", BUY, 2 * LOT, PRICE),  # crosses bob's ask
            trading_pb2.OrderCommand(
                cancel=trading_pb2.CancelOrderRequest(client_order_id="s-1", request_id="c-1")
            ),
            trading_pb2.OrderCommand(),  # empty command
        ],
    )
    second = trading_pb2.StreamOrdersRequest(
        batch_id="b-2", commands=[_place("s-1", BUY, LOT, PRICE - 10 * USDT)]
    )
    responses = [
        response
        async for response in service.trading.StreamOrders(
            _batches(first, second), metadata=trader("alice")
        )
    ]
    assert [response.batch_id for response in responses] == ["b-1", "b-2"]
    results = responses[0].results
    assert len(results) == 6
    assert results[0].order.status == types_pb2.ORDER_STATUS_NEW
    assert results[0].order.client_order_id == "s-1"
    assert results[1].error.reason == errors_pb2.ERROR_REASON_IDEMPOTENCY_KEY_MISSING
    assert results[2].error.reason == errors_pb2.ERROR_REASON_PRICE_TICK_VIOLATION
    assert results[3].order.status == types_pb2.ORDER_STATUS_FILLED
    assert [fill.quantity for fill in results[3].fills] == [2 * LOT]
    assert results[4].order.status == types_pb2.ORDER_STATUS_CANCELLED
    assert results[5].error.reason == errors_pb2.ERROR_REASON_FIELD_INVALID
    assert responses[0].engine_seq == int(results[4].order.engine_seq)
    # The retry of s-1 in the next batch returns the original result (idempotent): the same
    # order, as its place left it.
    (retry,) = responses[1].results
    assert retry.order.order_id == results[0].order.order_id
    assert retry.order.status == types_pb2.ORDER_STATUS_NEW


async def test_many_batches_keep_their_order(service: Harness) -> None:
    batches = [
        trading_pb2.StreamOrdersRequest(
            batch_id=str(number),
            commands=[
                _place(f"o-{number}-{index}", BUY, LOT, PRICE - (1 + index % 50) * USDT)
                for index in range(100)
            ],
        )
        for number in range(8)
    ]
    responses = [
        response
        async for response in service.trading.StreamOrders(
            _batches(*batches), metadata=trader("alice")
        )
    ]
    assert [response.batch_id for response in responses] == [str(number) for number in range(8)]
    order_ids = [
        int(result.order.order_id) for response in responses for result in response.results
    ]
    assert order_ids == sorted(order_ids)
    assert len(set(order_ids)) == 8 * 100


async def test_a_batch_over_the_limit_ends_the_stream_by_name(service: Harness) -> None:
    too_big = trading_pb2.StreamOrdersRequest(
        batch_id="big",
        commands=[_place(f"x-{index}", BUY, LOT, PRICE - USDT) for index in range(10_001)],
    )
    call = service.trading.StreamOrders(_batches(too_big), metadata=trader("alice"))
    await expect_error(_drain(call), grpc.StatusCode.INVALID_ARGUMENT, "BATCH_TOO_LARGE")


async def test_a_stream_without_an_account_is_refused(service: Harness) -> None:
    call = service.trading.StreamOrders(_batches())
    await expect_error(_drain(call), grpc.StatusCode.UNAUTHENTICATED, "API_KEY_MISSING")


async def _drain(call: Any) -> None:
    async for _ in call:
        raise AssertionError("no answer expected")
