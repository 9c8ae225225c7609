"""Enum member names are part of the API contract: compare them verbatim."""

from __future__ import annotations

import dataclasses
from enum import StrEnum

import pytest

from core.engine import events as events_module
from core.engine.enums import (
    CancelReason,
    MarketMode,
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

REJECT_REASONS = [
    "QUANTITY_INVALID",
    "PRICE_INVALID",
    "TIME_IN_FORCE_INVALID",
    "PRICE_TICK_VIOLATION",
    "QUANTITY_STEP_VIOLATION",
    "QUANTITY_BELOW_MIN",
    "QUANTITY_ABOVE_MAX",
    "NOTIONAL_BELOW_MIN",
    "PRICE_OUT_OF_BAND",
    "AMOUNT_OUT_OF_RANGE",
    "SYMBOL_UNKNOWN",
    "ASSET_UNKNOWN",
    "ORDER_NOT_FOUND",
    "DUPLICATE_CLIENT_ORDER_ID",
    "IDEMPOTENCY_KEY_REUSED",
    "MARKET_ALREADY_EXISTS",
    "ASSET_ALREADY_EXISTS",
    "MARKET_CONFIG_INVALID",
    "INSUFFICIENT_BALANCE",
    "MARKET_HALTED",
    "MARKET_CANCEL_ONLY",
    "POST_ONLY_WOULD_TAKE",
    "FOK_UNFILLABLE",
    "NO_LIQUIDITY",
    "ORDER_NOT_OPEN",
    "AMEND_INVALID",
    "OPEN_ORDER_LIMIT_EXCEEDED",
]


@pytest.mark.parametrize(
    ("enum_type", "names"),
    [
        (RejectReason, REJECT_REASONS),
        (Side, ["BUY", "SELL"]),
        (OrderType, ["LIMIT", "MARKET"]),
        (TimeInForce, ["GTC", "IOC", "FOK"]),
        (SelfTradePrevention, ["CANCEL_NEWEST", "CANCEL_OLDEST", "CANCEL_BOTH"]),
        (MarketMode, ["NORMAL", "CANCEL_ONLY", "HALTED"]),
        (
            OrderStatus,
            ["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "EXPIRED", "REJECTED"],
        ),
        (
            CancelReason,
            [
                "USER_REQUESTED",
                "CANCEL_ALL",
                "SELF_TRADE_PREVENTION",
                "IMMEDIATE_OR_CANCEL",
                "MARKET_ORDER_REMAINDER",
                "PRICE_BAND",
            ],
        ),
    ],
)
def test_enum_member_names(enum_type: type[StrEnum], names: list[str]) -> None:
    assert [member.name for member in enum_type] == names
    assert all(member.value == member.name for member in enum_type)


EVENT_NAMES = [
    "OrderAccepted",
    "OrderRejected",
    "OrderAmended",
    "OrderCancelled",
    "OrderExpired",
    "TradeExecuted",
    "FundsReserved",
    "FundsReleased",
    "FundsDeposited",
    "FundsWithdrawn",
    "BalanceAdjusted",
    "AssetCreated",
    "MarketCreated",
    "MarketModeChanged",
]


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_event_is_frozen_slotted_dataclass_with_stream_fields(name: str) -> None:
    event_type = getattr(events_module, name)
    params = event_type.__dataclass_params__
    assert params.frozen
    assert "__slots__" in event_type.__dict__
    field_names = [field.name for field in dataclasses.fields(event_type)]
    assert field_names[:4] == ["symbol", "seq", "engine_seq", "timestamp_ns"]


def test_trade_executed_fields() -> None:
    field_names = {field.name for field in dataclasses.fields(events_module.TradeExecuted)}
    assert field_names >= {
        "trade_id",
        "maker_order_id",
        "taker_order_id",
        "maker_account_id",
        "taker_account_id",
        "taker_side",
        "price",
        "quantity",
        "quote_amount",
        "maker_fee",
        "taker_fee",
        "maker_quantity_remaining",
        "taker_quantity_remaining",
    }


@pytest.mark.parametrize("name", ["FundsReserved", "FundsReleased"])
def test_funds_event_fields(name: str) -> None:
    field_names = {field.name for field in dataclasses.fields(getattr(events_module, name))}
    assert field_names >= {"account_id", "asset", "amount", "order_id"}
