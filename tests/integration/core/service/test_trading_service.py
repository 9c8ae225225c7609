"""TradingService through real grpc.aio channels against a real server and WAL."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from exchange.common.v1 import types_pb2
from exchange.trading.v1 import trading_pb2

from core.engine.testing import BTC, USDT
from core.service.testing import trader
from tests.integration.core.service.service_harness import LOT, PRICE, Harness, expect_error

BUY = types_pb2.SIDE_BUY
SELL = types_pb2.SIDE_SELL
ALICE = trader("alice")


async def test_place_get_list_and_balances(service: Harness) -> None:
    placed = await service.place("alice", "a-1", BUY, 10 * LOT, PRICE - 100 * USDT)
    order = placed.order
    assert order.status == types_pb2.ORDER_STATUS_NEW
    assert order.remaining_quantity == 10 * LOT
    assert order.account_id == "alice"
    assert order.time_in_force == types_pb2.TIME_IN_FORCE_GTC
    assert order.created_at.seconds > 0
    assert not placed.fills

    by_id = await service.trading.GetOrder(
        trading_pb2.GetOrderRequest(order_id=order.order_id), metadata=ALICE
    )
    by_client_id = await service.trading.GetOrder(
        trading_pb2.GetOrderRequest(client_order_id="a-1"), metadata=ALICE
    )
    assert by_id.order == by_client_id.order == order

    listed = await service.trading.ListOrders(
        trading_pb2.ListOrdersRequest(open_only=True), metadata=ALICE
    )
    assert [listed_order.order_id for listed_order in listed.orders] == [order.order_id]

    balances = await service.trading.ListAccountBalances(
        trading_pb2.ListAccountBalancesRequest(asset="USDT"), metadata=ALICE
    )
    (usdt,) = balances.balances
    assert usdt.held > 0
    assert usdt.available + usdt.held == 1_000_000 * USDT
    assert balances.engine_seq == int(order.order_id)


async def test_crossing_order_fills_both_sides(service: Harness) -> None:
    maker = (await service.place("alice", "m-1", SELL, 5 * LOT, PRICE)).order
    taken = await service.place("bob", "t-1", BUY, 3 * LOT, PRICE)
    assert taken.order.status == types_pb2.ORDER_STATUS_FILLED
    (fill,) = taken.fills
    assert fill.liquidity == types_pb2.LIQUIDITY_TAKER
    assert fill.quantity == 3 * LOT
    assert fill.price == PRICE
    assert fill.quote_quantity == PRICE * 3 * LOT // BTC
    assert fill.fee_asset == "USDT"
    assert fill.fee > 0

    maker_now = await service.trading.GetOrder(
        trading_pb2.GetOrderRequest(order_id=maker.order_id), metadata=ALICE
    )
    assert maker_now.order.status == types_pb2.ORDER_STATUS_PARTIALLY_FILLED
    assert maker_now.order.filled_quantity == 3 * LOT
    assert maker_now.order.remaining_quantity == 2 * LOT

    alice_fills = await service.trading.ListFills(trading_pb2.ListFillsRequest(), metadata=ALICE)
    (maker_fill,) = alice_fills.fills
    assert maker_fill.liquidity == types_pb2.LIQUIDITY_MAKER
    assert maker_fill.trade_id == fill.trade_id
    assert maker_fill.client_order_id == "m-1"
    assert maker_fill.side == SELL


async def test_cancel_by_id_by_client_id_amend_and_cancel_all(service: Harness) -> None:
    first = (await service.place("alice", "c-1", BUY, 4 * LOT, PRICE - 10 * USDT)).order
    await service.place("alice", "c-2", BUY, 4 * LOT, PRICE - 20 * USDT)
    await service.place("alice", "c-3", BUY, 4 * LOT, PRICE - 30 * USDT)

    cancelled = await service.trading.CancelOrder(
        trading_pb2.CancelOrderRequest(order_id=first.order_id, request_id="r-1"), metadata=ALICE
    )
    assert cancelled.order.status == types_pb2.ORDER_STATUS_CANCELLED
    assert cancelled.order.cancel_reason == types_pb2.CANCEL_REASON_USER_REQUESTED

    by_client = await service.trading.CancelOrder(
        trading_pb2.CancelOrderRequest(client_order_id="c-2", request_id="r-2"), metadata=ALICE
    )
    assert by_client.order.client_order_id == "c-2"
    assert by_client.order.status == types_pb2.ORDER_STATUS_CANCELLED

    amended = await service.trading.AmendOrder(
        trading_pb2.AmendOrderRequest(
            order_id=str(int(first.order_id) + 2), new_quantity=2 * LOT, request_id="r-3"
        ),
        metadata=ALICE,
    )
    assert amended.priority_kept
    assert amended.order.quantity == 2 * LOT
    assert amended.order.price == PRICE - 30 * USDT

    repriced = await service.trading.AmendOrder(
        trading_pb2.AmendOrderRequest(
            order_id=amended.order.order_id, new_price=PRICE - 40 * USDT, request_id="r-4"
        ),
        metadata=ALICE,
    )
    assert not repriced.priority_kept
    assert repriced.order.quantity == 2 * LOT

    await service.place("alice", "c-4", SELL, 1 * LOT, PRICE + 10 * USDT)
    everything = await service.trading.CancelAllOrders(
        trading_pb2.CancelAllOrdersRequest(request_id="r-5"), metadata=ALICE
    )
    assert sorted(order.client_order_id for order in everything.cancelled_orders) == ["c-3", "c-4"]
    assert all(
        order.cancel_reason == types_pb2.CANCEL_REASON_CANCEL_ALL
        for order in everything.cancelled_orders
    )
    open_orders = await service.trading.ListOrders(
        trading_pb2.ListOrdersRequest(open_only=True), metadata=ALICE
    )
    assert not open_orders.orders


async def test_place_retry_returns_the_original_and_other_params_are_refused(
    service: Harness,
) -> None:
    first = await service.place("alice", "same", BUY, 2 * LOT, PRICE - USDT)
    again = await service.place("alice", "same", BUY, 2 * LOT, PRICE - USDT)
    assert again.order.order_id == first.order.order_id
    await expect_error(
        service.place("alice", "same", BUY, 3 * LOT, PRICE - USDT),
        grpc.StatusCode.ALREADY_EXISTS,
        "DUPLICATE_CLIENT_ORDER_ID",
    )
    # A rejected place is remembered too: the retry returns the original rejection.
    for _ in range(2):
        await expect_error(
            service.place("alice", "too-big", BUY, 100 * BTC, PRICE),
            grpc.StatusCode.FAILED_PRECONDITION,
            "INSUFFICIENT_BALANCE",
        )


async def test_cancel_retry_returns_the_original_and_reuse_is_refused(service: Harness) -> None:
    order = (await service.place("alice", "x-1", BUY, LOT, PRICE - USDT)).order
    request = trading_pb2.CancelOrderRequest(order_id=order.order_id, request_id="cancel-1")
    first = await service.trading.CancelOrder(request, metadata=ALICE)
    again = await service.trading.CancelOrder(request, metadata=ALICE)
    assert again == first
    other = (await service.place("alice", "x-2", BUY, LOT, PRICE - USDT)).order
    await expect_error(
        service.trading.CancelOrder(
            trading_pb2.CancelOrderRequest(order_id=other.order_id, request_id="cancel-1"),
            metadata=ALICE,
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_KEY_REUSED",
    )


async def test_accounts_never_see_each_others_orders(service: Harness) -> None:
    order = (await service.place("alice", "private", BUY, LOT, PRICE - USDT)).order
    bob = trader("bob")
    await expect_error(
        service.trading.GetOrder(
            trading_pb2.GetOrderRequest(order_id=order.order_id), metadata=bob
        ),
        grpc.StatusCode.NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    await expect_error(
        service.trading.GetOrder(
            trading_pb2.GetOrderRequest(client_order_id="private"), metadata=bob
        ),
        grpc.StatusCode.NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    await expect_error(
        service.trading.CancelOrder(
            trading_pb2.CancelOrderRequest(order_id=order.order_id, request_id="steal"),
            metadata=bob,
        ),
        grpc.StatusCode.NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    bob_orders = await service.trading.ListOrders(trading_pb2.ListOrdersRequest(), metadata=bob)
    assert not bob_orders.orders
    cancel_all = await service.trading.CancelAllOrders(
        trading_pb2.CancelAllOrdersRequest(request_id="bob-all"), metadata=bob
    )
    assert not cancel_all.cancelled_orders
    still = await service.trading.GetOrder(
        trading_pb2.GetOrderRequest(order_id=order.order_id), metadata=ALICE
    )
    assert still.order.status == types_pb2.ORDER_STATUS_NEW


async def test_a_call_without_an_account_is_unauthenticated(service: Harness) -> None:
    request = trading_pb2.PlaceOrderRequest(
        client_order_id="x",
        symbol="BTC-USDT",
        side=BUY,
        order_type=types_pb2.ORDER_TYPE_LIMIT,
        quantity=LOT,
        price=PRICE,
    )
    await expect_error(
        service.trading.PlaceOrder(request), grpc.StatusCode.UNAUTHENTICATED, "API_KEY_MISSING"
    )
    await expect_error(
        service.trading.ListOrders(trading_pb2.ListOrdersRequest()),
        grpc.StatusCode.UNAUTHENTICATED,
        "API_KEY_MISSING",
    )


def _place(**overrides: Any) -> trading_pb2.PlaceOrderRequest:
    fields: dict[str, Any] = {
        "client_order_id": "v-1",
        "symbol": "BTC-USDT",
        "side": BUY,
        "order_type": types_pb2.ORDER_TYPE_LIMIT,
        "quantity": LOT,
        "price": PRICE,
    }
    fields.update(overrides)
    return trading_pb2.PlaceOrderRequest(**fields)


INVALID = grpc.StatusCode.INVALID_ARGUMENT
FAILED = grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("request_message", "code", "reason"),
    [
        (_place(client_order_id=""), INVALID, "IDEMPOTENCY_KEY_MISSING"),
        (_place(client_order_id="x" * 65), INVALID, "FIELD_INVALID"),
        (_place(symbol=""), INVALID, "FIELD_INVALID"),
        (_place(symbol="S" * 33), INVALID, "FIELD_INVALID"),
        (_place(side=types_pb2.SIDE_UNSPECIFIED), INVALID, "FIELD_INVALID"),
        (_place(order_type=types_pb2.ORDER_TYPE_UNSPECIFIED), INVALID, "FIELD_INVALID"),
        (_place(quantity=0), INVALID, "QUANTITY_INVALID"),
        (_place(quantity=-LOT), INVALID, "QUANTITY_INVALID"),
        (_place(quote_quantity=USDT), INVALID, "QUANTITY_INVALID"),
        (_place(price=0), INVALID, "PRICE_INVALID"),
        (_place(price=-PRICE), INVALID, "PRICE_INVALID"),
        (_place(order_type=types_pb2.ORDER_TYPE_MARKET), INVALID, "PRICE_INVALID"),
        (_place(time_in_force=9), INVALID, "FIELD_INVALID"),
        (_place(self_trade_prevention=9), INVALID, "FIELD_INVALID"),
        # Engine rejections, logged and returned by name:
        (_place(price=PRICE + 1), INVALID, "PRICE_TICK_VIOLATION"),
        (_place(quantity=LOT + 1), INVALID, "QUANTITY_STEP_VIOLATION"),
        (_place(quantity=101 * BTC), INVALID, "QUANTITY_ABOVE_MAX"),
        (_place(symbol="ETH-USDT"), grpc.StatusCode.NOT_FOUND, "SYMBOL_UNKNOWN"),
        (_place(quantity=50 * BTC), FAILED, "INSUFFICIENT_BALANCE"),
        (_place(price=PRICE * 2), FAILED, "PRICE_OUT_OF_BAND"),
        (_place(price=PRICE + 100 * USDT, post_only=True), FAILED, "POST_ONLY_WOULD_TAKE"),
        (
            _place(price=PRICE + 100 * USDT, time_in_force=3, quantity=5 * LOT),
            FAILED,
            "FOK_UNFILLABLE",
        ),
        (
            _place(order_type=types_pb2.ORDER_TYPE_MARKET, price=0, side=SELL, quantity=LOT),
            FAILED,
            "NO_LIQUIDITY",
        ),
        (
            _place(order_type=types_pb2.ORDER_TYPE_MARKET, price=0, time_in_force=1),
            INVALID,
            "TIME_IN_FORCE_INVALID",
        ),
    ],
)
async def test_place_errors_reach_the_client_by_name(
    service: Harness,
    request_message: trading_pb2.PlaceOrderRequest,
    code: grpc.StatusCode,
    reason: str,
) -> None:
    await service.place("bob", "ask", SELL, LOT, PRICE + 50 * USDT)  # one ask to cross
    await expect_error(service.trading.PlaceOrder(request_message, metadata=ALICE), code, reason)


@pytest.mark.parametrize(
    ("call", "request_message", "code", "reason"),
    [
        (
            "CancelOrder",
            trading_pb2.CancelOrderRequest(order_id="1"),
            INVALID,
            "IDEMPOTENCY_KEY_MISSING",
        ),
        ("CancelOrder", trading_pb2.CancelOrderRequest(request_id="r"), INVALID, "FIELD_INVALID"),
        (
            "CancelOrder",
            trading_pb2.CancelOrderRequest(order_id="x1", request_id="r"),
            INVALID,
            "FIELD_INVALID",
        ),
        (
            "CancelOrder",
            trading_pb2.CancelOrderRequest(order_id="1", client_order_id="c", request_id="r"),
            INVALID,
            "FIELD_INVALID",
        ),
        (
            "CancelOrder",
            trading_pb2.CancelOrderRequest(order_id="999999", request_id="r"),
            grpc.StatusCode.NOT_FOUND,
            "ORDER_NOT_FOUND",
        ),
        (
            "AmendOrder",
            trading_pb2.AmendOrderRequest(order_id="1", new_quantity=LOT),
            INVALID,
            "IDEMPOTENCY_KEY_MISSING",
        ),
        (
            "AmendOrder",
            trading_pb2.AmendOrderRequest(order_id="1", request_id="r"),
            INVALID,
            "FIELD_INVALID",
        ),
        (
            "AmendOrder",
            trading_pb2.AmendOrderRequest(order_id="1", new_quantity=-1, request_id="r"),
            INVALID,
            "QUANTITY_INVALID",
        ),
        (
            "AmendOrder",
            trading_pb2.AmendOrderRequest(order_id="1", new_price=-1, request_id="r"),
            INVALID,
            "PRICE_INVALID",
        ),
        (
            "CancelAllOrders",
            trading_pb2.CancelAllOrdersRequest(),
            INVALID,
            "IDEMPOTENCY_KEY_MISSING",
        ),
        (
            "CancelAllOrders",
            trading_pb2.CancelAllOrdersRequest(symbol="NOPE", request_id="r"),
            grpc.StatusCode.NOT_FOUND,
            "SYMBOL_UNKNOWN",
        ),
        ("GetOrder", trading_pb2.GetOrderRequest(), INVALID, "FIELD_INVALID"),
        (
            "GetOrder",
            trading_pb2.GetOrderRequest(order_id="424242"),
            grpc.StatusCode.NOT_FOUND,
            "ORDER_NOT_FOUND",
        ),
        (
            "ListOrders",
            trading_pb2.ListOrdersRequest(page_token="abc"),
            INVALID,
            "PAGE_TOKEN_INVALID",
        ),
        ("ListOrders", trading_pb2.ListOrdersRequest(page_size=-1), INVALID, "FIELD_INVALID"),
        ("ListFills", trading_pb2.ListFillsRequest(order_id="-3"), INVALID, "FIELD_INVALID"),
    ],
)
async def test_other_errors_reach_the_client_by_name(
    service: Harness, call: str, request_message: Any, code: grpc.StatusCode, reason: str
) -> None:
    await expect_error(
        getattr(service.trading, call)(request_message, metadata=ALICE), code, reason
    )


async def test_amend_and_cancel_of_a_closed_order_are_rejected_by_name(service: Harness) -> None:
    order = (await service.place("alice", "closed", BUY, LOT, PRICE - USDT)).order
    await service.trading.CancelOrder(
        trading_pb2.CancelOrderRequest(order_id=order.order_id, request_id="k-1"), metadata=ALICE
    )
    await expect_error(
        service.trading.CancelOrder(
            trading_pb2.CancelOrderRequest(order_id=order.order_id, request_id="k-2"),
            metadata=ALICE,
        ),
        FAILED,
        "ORDER_NOT_OPEN",
    )
    await expect_error(
        service.trading.AmendOrder(
            trading_pb2.AmendOrderRequest(
                order_id=order.order_id, new_quantity=2 * LOT, request_id="k-3"
            ),
            metadata=ALICE,
        ),
        FAILED,
        "ORDER_NOT_OPEN",
    )


async def test_list_orders_pages_newest_first(service: Harness) -> None:
    ids = [
        (
            await service.place("alice", f"p-{index}", BUY, LOT, PRICE - (index + 1) * USDT)
        ).order.order_id
        for index in range(5)
    ]
    first = await service.trading.ListOrders(
        trading_pb2.ListOrdersRequest(page_size=2), metadata=ALICE
    )
    second = await service.trading.ListOrders(
        trading_pb2.ListOrdersRequest(page_size=2, page_token=first.next_page_token), metadata=ALICE
    )
    third = await service.trading.ListOrders(
        trading_pb2.ListOrdersRequest(page_size=2, page_token=second.next_page_token),
        metadata=ALICE,
    )
    pages = [order.order_id for page in (first, second, third) for order in page.orders]
    assert pages == ids[::-1]
    assert not third.next_page_token
