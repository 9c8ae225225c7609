"""Engine enums <-> contract enums: every member round-trips; zero and unknown are refused."""

from __future__ import annotations

import pytest
from exchange.common.v1 import types_pb2

from core.contracts import enums
from core.engine.enums import OrderStatus, Side

_MAPPINGS = [
    enums.SIDE,
    enums.ORDER_TYPE,
    enums.TIME_IN_FORCE,
    enums.SELF_TRADE_PREVENTION,
    enums.MARKET_MODE,
    enums.ORDER_STATUS,
    enums.CANCEL_REASON,
    enums.REJECT_REASON,
]


@pytest.mark.parametrize("mapping", _MAPPINGS)
def test_every_member_round_trips(mapping: enums._EnumMapping) -> None:  # type: ignore[type-arg]
    members = list(mapping._to_proto)
    assert members
    for member in members:
        number = mapping.to_proto(member)
        assert number != 0
        assert mapping.from_proto(number) is member


def test_values_are_the_contract_values_of_the_same_name() -> None:
    assert enums.SIDE.to_proto(Side.SELL) == types_pb2.SIDE_SELL
    assert enums.ORDER_STATUS.to_proto(OrderStatus.PARTIALLY_FILLED) == (
        types_pb2.ORDER_STATUS_PARTIALLY_FILLED
    )


@pytest.mark.parametrize("number", [0, 99])
def test_unspecified_or_unknown_is_refused_with_the_enum_name(number: int) -> None:
    with pytest.raises(enums.UnspecifiedEnumError) as raised:
        enums.SIDE.from_proto(number)
    assert raised.value.enum_name == "Side"
    assert raised.value.value == number
