"""The blocking client against the real edge (Envoy + gateway + Redis + core): signed
orders, cancels and lists, a crossing pair trades and balances move, a retry with the
same key returns the original order, errors arrive typed with their reasons."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from exchange_sdk import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    OrderStatus,
    PermissionDeniedError,
    PrecisionExceededError,
    RejectedError,
    Side,
    new_idempotency_key,
)
from exchange_sdk.errors import PriceTickViolationError

from tests.integration.edge.harness import ALICE, BOB, READER
from tests.integration.sdk.conftest import SdkEdge


def test_place_list_get_and_cancel(sdk_edge: SdkEdge) -> None:
    with sdk_edge.client() as client:
        placed = client.place_order("BTC-USDT", Side.BUY, Decimal("0.01"), price="45000.5")
        order = placed.order
        assert order.status is OrderStatus.NEW
        assert order.price == Decimal("45000.500000")
        assert order.quantity == Decimal("0.01000000")
        assert placed.fills == ()

        assert client.get_order(order.order_id) == order
        assert client.get_order(client_order_id=order.client_order_id) == order
        open_orders = client.list_orders("BTC-USDT", open_only=True).items
        assert order.order_id in {listed.order_id for listed in open_orders}

        cancelled = client.cancel_order(order.order_id)
        assert cancelled.status is OrderStatus.CANCELLED
        assert cancelled.remaining_quantity == 0


def test_a_crossing_pair_trades_and_balances_move(sdk_edge: SdkEdge) -> None:
    with sdk_edge.client(ALICE) as alice, sdk_edge.client(BOB) as bob:
        alice_before = alice.get_balances()
        bob_before = bob.get_balances()
        resting = bob.place_order("ETH-USDT", "sell", "0.5", price="3001.25")
        taken = alice.place_order("ETH-USDT", "buy", "0.5", price="3001.25", time_in_force="ioc")
        assert taken.order.status is OrderStatus.FILLED
        assert [fill.quantity for fill in taken.fills] == [Decimal("0.5")]
        fill = taken.fills[0]
        assert fill.price == Decimal("3001.25")
        assert fill.quote_quantity == Decimal("1500.625")
        assert fill.fee == Decimal("3.001250")  # taker 0.2 %

        alice_after = alice.get_balances()
        assert alice_after["ETH"].available - alice_before["ETH"].available == Decimal("0.5")
        assert alice_before["USDT"].available - alice_after["USDT"].available == Decimal(
            "1503.626250"
        )
        bob_after = bob.get_balances()
        assert bob_before["ETH"].total - bob_after["ETH"].total == Decimal("0.5")
        assert bob.get_order(resting.order.order_id).status is OrderStatus.FILLED
        fills = alice.list_fills("ETH-USDT", order_id=taken.order.order_id).items
        assert [listed.trade_id for listed in fills] == [fill.trade_id]


def test_the_same_key_returns_the_original_order(sdk_edge: SdkEdge) -> None:
    key = new_idempotency_key()
    with sdk_edge.client() as client:
        first = client.place_order("BTC-USDT", "buy", "0.001", price="45500", client_order_id=key)
        again = client.place_order("BTC-USDT", "buy", "0.001", price="45500", client_order_id=key)
        assert again.order.order_id == first.order.order_id
        assert again.order == first.order
        with pytest.raises(ConflictError) as reused:
            client.place_order("BTC-USDT", "buy", "0.002", price="45500", client_order_id=key)
        assert reused.value.reason in {"DUPLICATE_CLIENT_ORDER_ID", "IDEMPOTENCY_KEY_REUSED"}

        cancel_key = new_idempotency_key()
        cancelled = client.cancel_order(first.order.order_id, request_id=cancel_key)
        assert client.cancel_order(first.order.order_id, request_id=cancel_key) == cancelled


def test_errors_are_typed_with_their_reasons(sdk_edge: SdkEdge) -> None:
    with sdk_edge.client() as client:
        with pytest.raises(PrecisionExceededError):
            client.place_order("BTC-USDT", "buy", "0.000000001", price="45000")
        with pytest.raises(PriceTickViolationError):
            client.place_order("BTC-USDT", "buy", "0.01", price="45000.001")
        with pytest.raises(RejectedError) as poor:
            client.place_order("BTC-USDT", "buy", "99", price="45000")
        assert poor.value.reason == "INSUFFICIENT_BALANCE"
        with pytest.raises(NotFoundError) as missing:
            client.cancel_order("999999999")
        assert missing.value.reason == "ORDER_NOT_FOUND"
    with sdk_edge.client(("alice", "not-the-secret", "acct-alice")) as forged:
        with pytest.raises(AuthenticationError) as refused:
            forged.list_orders()
        assert refused.value.reason == "SIGNATURE_INVALID"
    with sdk_edge.client(READER) as reader:
        with pytest.raises(PermissionDeniedError) as denied:
            reader.place_order("BTC-USDT", "buy", "0.01", price="45000")
        assert denied.value.reason == "PERMISSION_DENIED"


def test_an_unknown_market_is_not_found(sdk_edge: SdkEdge) -> None:
    with sdk_edge.client() as client:
        # A spec the client believes in, for a market the exchange does not list.
        client.catalog.add_market(replace(client.catalog.markets["BTC-USDT"], symbol="DOGE-USDT"))
        with pytest.raises(NotFoundError) as unknown:
            client.place_order("DOGE-USDT", "buy", "0.01", price="45000")
        assert unknown.value.reason == "SYMBOL_UNKNOWN"
