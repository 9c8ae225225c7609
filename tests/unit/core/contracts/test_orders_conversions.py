"""core/contracts/orders.py: request -> command conversions (named refusals) and the stream's
one-pass order summary (equal to the two-step form it replaces)."""

from __future__ import annotations

import pytest
from exchange.common.v1 import errors_pb2, types_pb2
from exchange.trading.v1 import trading_pb2
from hypothesis import given
from hypothesis import strategies as st

from core.contracts import orders
from core.contracts.errors import RequestError
from core.engine import (
    CancelOrder,
    OrderType,
    Outcome,
    PlaceOrder,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from core.engine.enums import OrderStatus, RejectReason

# ---------------------------------------------------------------------- place_order


def _place(**fields: object) -> trading_pb2.PlaceOrderRequest:
    request = trading_pb2.PlaceOrderRequest(
        client_order_id="c-1",
        symbol="BTC-USDT",
        side=types_pb2.SIDE_BUY,
        order_type=types_pb2.ORDER_TYPE_LIMIT,
        quantity=10,
        price=500,
    )
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def test_a_limit_place_becomes_the_engine_command() -> None:
    command = orders.place_order("alice", _place(post_only=True))
    assert command == PlaceOrder(
        account_id="alice",
        symbol="BTC-USDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        quantity=10,
        price=500,
        time_in_force=TimeInForce.GTC,
        post_only=True,
        self_trade_prevention=SelfTradePrevention.CANCEL_NEWEST,
        client_order_id="c-1",
    )
    assert type(command) is PlaceOrder


def test_unspecified_time_in_force_depends_on_the_type() -> None:
    market = orders.place_order(
        "alice", _place(order_type=types_pb2.ORDER_TYPE_MARKET, price=0, side=types_pb2.SIDE_SELL)
    )
    assert market.time_in_force is TimeInForce.IOC
    assert market.side is Side.SELL
    explicit = orders.place_order(
        "alice",
        _place(
            time_in_force=types_pb2.TIME_IN_FORCE_FOK,
            self_trade_prevention=types_pb2.SELF_TRADE_PREVENTION_CANCEL_BOTH,
        ),
    )
    assert explicit.time_in_force is TimeInForce.FOK
    assert explicit.self_trade_prevention is SelfTradePrevention.CANCEL_BOTH


@pytest.mark.parametrize(
    ("fields", "reason", "field"),
    [
        (
            {"client_order_id": ""},
            errors_pb2.ERROR_REASON_IDEMPOTENCY_KEY_MISSING,
            "client_order_id",
        ),
        ({"client_order_id": "x" * 65}, errors_pb2.ERROR_REASON_FIELD_INVALID, "client_order_id"),
        ({"symbol": ""}, errors_pb2.ERROR_REASON_FIELD_INVALID, "symbol"),
        ({"symbol": "S" * 33}, errors_pb2.ERROR_REASON_FIELD_INVALID, "symbol"),
        ({"side": types_pb2.SIDE_UNSPECIFIED}, errors_pb2.ERROR_REASON_FIELD_INVALID, "side"),
        (
            {"order_type": types_pb2.ORDER_TYPE_UNSPECIFIED},
            errors_pb2.ERROR_REASON_FIELD_INVALID,
            "order_type",
        ),
        ({"quantity": 0}, errors_pb2.ERROR_REASON_QUANTITY_INVALID, "quantity"),
        ({"quantity": -1}, errors_pb2.ERROR_REASON_QUANTITY_INVALID, "quantity"),
        ({"quote_quantity": 5}, errors_pb2.ERROR_REASON_QUANTITY_INVALID, "quantity"),
        ({"price": 0}, errors_pb2.ERROR_REASON_PRICE_INVALID, "price"),
        (
            {"order_type": types_pb2.ORDER_TYPE_MARKET},  # a market order with a price
            errors_pb2.ERROR_REASON_PRICE_INVALID,
            "price",
        ),
        ({"time_in_force": 99}, errors_pb2.ERROR_REASON_FIELD_INVALID, "time_in_force"),
        (
            {"self_trade_prevention": 99},
            errors_pb2.ERROR_REASON_FIELD_INVALID,
            "self_trade_prevention",
        ),
    ],
)
def test_malformed_places_are_refused_by_name(
    fields: dict[str, object], reason: int, field: str
) -> None:
    with pytest.raises(RequestError) as raised:
        orders.place_order("alice", _place(**fields))
    assert raised.value.reason == reason
    assert raised.value.field == field


def test_stream_commands_dispatch_by_kind() -> None:
    cancel = trading_pb2.OrderCommand(
        cancel=trading_pb2.CancelOrderRequest(order_id="42", request_id="r-1")
    )
    assert orders.order_command("bob", cancel) == CancelOrder(
        account_id="bob", order_id=42, request_id="r-1"
    )
    with pytest.raises(RequestError) as raised:
        orders.order_command("bob", trading_pb2.OrderCommand())
    assert raised.value.field == "command"


# ---------------------------------------------------------------------- order summary

ints = st.integers(min_value=0, max_value=2**62)
records = st.builds(
    orders.OrderRecord,
    order_id=st.integers(min_value=1, max_value=2**62),
    account_id=st.text(max_size=8),
    client_order_id=st.text(max_size=8),
    symbol=st.text(max_size=8),
    side=st.sampled_from(Side),
    order_type=st.sampled_from(OrderType),
    time_in_force=st.sampled_from(TimeInForce),
    post_only=st.booleans(),
    self_trade_prevention=st.sampled_from(SelfTradePrevention),
    price=ints,
    quantity=ints,
    quote_quantity=ints,
    status=st.sampled_from(OrderStatus),
    remaining_quantity=ints,
    created_ns=ints,
    engine_seq=ints,
)
outcomes = st.builds(
    Outcome,
    engine_seq=ints,
    reason=st.none() | st.sampled_from(RejectReason),
    order_id=ints,
    status=st.none() | st.sampled_from(OrderStatus),
    filled_quantity=ints,
)


@given(record=records, outcome=outcomes, filled=ints)
def test_the_one_pass_summary_equals_summary_then_outcome(
    record: orders.OrderRecord, outcome: Outcome, filled: int
) -> None:
    record.filled_quantity = filled
    expected = trading_pb2.Order()
    orders.fill_order_summary(expected, record)
    orders.write_outcome(expected, outcome)
    actual = trading_pb2.Order()
    orders.fill_order_summary_with_outcome(actual, record, outcome)
    assert actual == expected
    assert actual.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )
