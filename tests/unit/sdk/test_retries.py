"""Retries are safe: a PlaceOrder lost once (UNAVAILABLE) is resent with the same bytes -
the same client_order_id - and a fresh signature; rejections are never retried. Runs the
real gRPC transport against an in-process server, and the testing fake under Client."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from decimal import Decimal
from typing import Any

import grpc
import pytest
from exchange.common.v1 import types_pb2
from exchange.trading.v1 import trading_pb2
from exchange_sdk import (
    Client,
    OrderStatus,
    RejectedError,
    RetryPolicy,
    Side,
    UnavailableError,
)
from exchange_sdk.testing import (
    AsyncFakeTransport,
    FakeTransport,
    fake_async_client,
    fake_client,
    rejection,
    unavailable,
)

from tests.unit.sdk.markets import BTC_USDT

PLACE = "/exchange.trading.v1.TradingService/PlaceOrder"
FAST = RetryPolicy(attempts_max=3, backoff_initial_seconds=0.001, backoff_max_seconds=0.002)


def _accepted(request: trading_pb2.PlaceOrderRequest) -> trading_pb2.PlaceOrderResponse:
    return trading_pb2.PlaceOrderResponse(
        order=trading_pb2.Order(
            order_id="1",
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            price=request.price,
            quantity=request.quantity,
            remaining_quantity=request.quantity,
            status=types_pb2.ORDER_STATUS_NEW,
        )
    )


class FlakyCore:
    """Answers UNAVAILABLE `failures` times, then accepts; records every attempt."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[tuple[bytes, dict[str, str]]] = []

    def handler(self) -> grpc.GenericRpcHandler:
        def place(payload: bytes, context: grpc.ServicerContext) -> bytes:
            metadata = {key: str(value) for key, value in context.invocation_metadata()}
            self.attempts.append((payload, metadata))
            if len(self.attempts) <= self.failures:
                context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
            request = trading_pb2.PlaceOrderRequest.FromString(payload)
            return _accepted(request).SerializeToString()

        method: Any = grpc.unary_unary_rpc_method_handler(place)
        return grpc.method_handlers_generic_handler(
            "exchange.trading.v1.TradingService", {"PlaceOrder": method}
        )


@pytest.fixture
def flaky_core() -> Iterator[tuple[FlakyCore, int]]:
    core = FlakyCore(failures=2)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([core.handler()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield core, port
    server.stop(grace=None)


def test_the_grpc_transport_resends_the_same_bytes_signed_afresh(
    flaky_core: tuple[FlakyCore, int],
) -> None:
    core, port = flaky_core
    client = Client(
        f"127.0.0.1:{port}", api_key="k", api_secret="s", retry=FAST, markets=[BTC_USDT]
    )
    with client:
        result = client.place_order("BTC-USDT", "buy", "0.01", price="50000")
    assert result.order.status is OrderStatus.NEW
    assert len(core.attempts) == 3
    payloads = {payload for payload, _ in core.attempts}
    assert len(payloads) == 1  # the same order, the same client_order_id
    key = trading_pb2.PlaceOrderRequest.FromString(payloads.pop()).client_order_id
    assert {metadata["idempotency-key"] for _, metadata in core.attempts} == {key}
    assert len({metadata["x-signature"] for _, metadata in core.attempts}) == 3


def test_the_grpc_transport_gives_up_after_its_attempts(
    flaky_core: tuple[FlakyCore, int],
) -> None:
    core, port = flaky_core
    core.failures = 10
    retry = RetryPolicy(attempts_max=2, backoff_initial_seconds=0.001)
    with (
        Client(
            f"127.0.0.1:{port}", api_key="k", api_secret="s", retry=retry, markets=[BTC_USDT]
        ) as client,
        pytest.raises(UnavailableError),
    ):
        client.place_order("BTC-USDT", "buy", "0.01", price="50000")
    assert len(core.attempts) == 2


def test_the_fake_transport_scripts_failures_and_answers() -> None:
    fake = FakeTransport()
    fake.fail("PlaceOrder", unavailable(), times=1)
    fake.answer("PlaceOrder", _accepted)  # type: ignore[arg-type]
    client = fake_client(fake, markets=[BTC_USDT])
    placed = client.place_order("BTC-USDT", "sell", "0.5", price="51000", client_order_id="k-1")
    assert placed.order.client_order_id == "k-1"
    sent: list[Any] = fake.requests("PlaceOrder")
    assert [request.client_order_id for request in sent] == ["k-1", "k-1"]
    assert sent[0].price == 51_000_000_000
    assert sent[0].quantity == 50_000_000

    fake.fail("PlaceOrder", rejection("INSUFFICIENT_BALANCE"), times=1)
    with pytest.raises(RejectedError) as rejected:
        client.place_order("BTC-USDT", "sell", "0.5", price="51000")
    assert rejected.value.reason == "INSUFFICIENT_BALANCE"
    assert len(fake.requests(PLACE)) == 3  # a rejection is not retried


async def test_the_async_fake_transport_under_the_async_client() -> None:
    fake = AsyncFakeTransport()
    fake.fail("PlaceOrder", unavailable(), times=2)
    fake.answer("PlaceOrder", _accepted)  # type: ignore[arg-type]
    async with fake_async_client(fake, markets=[BTC_USDT]) as client:
        placed = await client.place_order("BTC-USDT", Side.BUY, "0.01", price="50000")
    assert placed.order.price == Decimal("50000")
    keys = {request.client_order_id for request in fake.requests("PlaceOrder")}  # type: ignore[attr-defined]
    assert len(keys) == 1
    assert len(fake.requests("PlaceOrder")) == 3
    assert fake.closed
