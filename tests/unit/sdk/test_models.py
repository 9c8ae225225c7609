"""Models convert exactly: whole-unit Decimals in and out, off-grid values refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from exchange.common.v1 import errors_pb2, types_pb2
from exchange.trading.v1 import trading_pb2
from exchange_sdk import OrderStatus, OrderType, Side, TimeInForce
from exchange_sdk.errors import (
    PrecisionExceededError,
    PriceTickViolationError,
    QuantityStepViolationError,
)
from exchange_sdk.models import CandleInterval, Order

from tests.unit.sdk.markets import BTC_USDT


def test_market_spec_in_whole_units() -> None:
    assert BTC_USDT.price_tick == Decimal("0.01")
    assert BTC_USDT.lot_step == Decimal("0.0001")
    assert BTC_USDT.reference_price == Decimal("50000")
    assert BTC_USDT.base_scale == 8


@pytest.mark.parametrize(
    ("price", "units"), [("50000", 50_000_000_000), ("50000.01", 50_000_010_000), (7, 7_000_000)]
)
def test_price_units(price: str | int, units: int) -> None:
    assert BTC_USDT.price_units(price) == units
    assert BTC_USDT.price(units) == Decimal(price)


def test_off_grid_and_too_precise_values_are_refused_never_rounded() -> None:
    with pytest.raises(PriceTickViolationError) as tick:
        BTC_USDT.price_units("50000.001")
    assert tick.value.reason == "PRICE_TICK_VIOLATION"
    with pytest.raises(PrecisionExceededError):
        BTC_USDT.price_units("50000.0000001")
    with pytest.raises(QuantityStepViolationError) as step:
        BTC_USDT.quantity_units("0.00015")
    assert step.value.reason == "QUANTITY_STEP_VIOLATION"
    with pytest.raises(PrecisionExceededError):
        BTC_USDT.quantity_units("0.000000001")
    with pytest.raises(TypeError):
        BTC_USDT.quantity_units(0.1)  # type: ignore[arg-type]


def test_order_from_proto() -> None:
    message = trading_pb2.Order(
        order_id="7",
        client_order_id="c-1",
        symbol="BTC-USDT",
        side=types_pb2.SIDE_SELL,
        order_type=types_pb2.ORDER_TYPE_LIMIT,
        time_in_force=types_pb2.TIME_IN_FORCE_GTC,
        price=50_000_010_000,
        quantity=1_500_000,
        status=types_pb2.ORDER_STATUS_REJECTED,
        reject_reason=errors_pb2.ERROR_REASON_INSUFFICIENT_BALANCE,
        fees_paid=1,
    )
    order = Order.from_proto(message, BTC_USDT)
    assert order.side is Side.SELL
    assert order.order_type is OrderType.LIMIT
    assert order.price == Decimal("50000.01")
    assert order.quantity == Decimal("0.015")
    assert order.fees_paid == Decimal("0.000001")
    assert order.status is OrderStatus.REJECTED
    assert not order.status.is_open
    assert order.reject_reason == "INSUFFICIENT_BALANCE"
    assert order.created_at is None
    assert order.raw is message


def test_enums_parse_by_name() -> None:
    assert Side.parse("buy") is Side.BUY
    assert Side.parse("SIDE_SELL") is Side.SELL
    assert TimeInForce.parse("ioc") is TimeInForce.IOC
    assert CandleInterval.from_label("5m") is CandleInterval.FIVE_MINUTES
    assert CandleInterval.ONE_HOUR.channel_label == "1h"
    with pytest.raises(ValueError, match="not a Side"):
        Side.parse("hold")
