"""The pure engine speaks the contract's vocabulary: every enum member it uses has the
same-named value in the protos (with the proto's prefix), so the service layer maps
them by name and no rejection can reach a client without a documented reason."""

from __future__ import annotations

from enum import StrEnum

import pytest
from exchange.common.v1 import errors_pb2, types_pb2
from google.protobuf.descriptor import EnumDescriptor

from core.engine import enums

_PAIRS: list[tuple[type[StrEnum], EnumDescriptor, str]] = [
    (enums.Side, types_pb2.Side.DESCRIPTOR, "SIDE_"),
    (enums.OrderType, types_pb2.OrderType.DESCRIPTOR, "ORDER_TYPE_"),
    (enums.TimeInForce, types_pb2.TimeInForce.DESCRIPTOR, "TIME_IN_FORCE_"),
    (enums.SelfTradePrevention, types_pb2.SelfTradePrevention.DESCRIPTOR, "SELF_TRADE_PREVENTION_"),
    (enums.MarketMode, types_pb2.MarketMode.DESCRIPTOR, "MARKET_MODE_"),
    (enums.OrderStatus, types_pb2.OrderStatus.DESCRIPTOR, "ORDER_STATUS_"),
    (enums.CancelReason, types_pb2.CancelReason.DESCRIPTOR, "CANCEL_REASON_"),
    (enums.RejectReason, errors_pb2.ErrorReason.DESCRIPTOR, "ERROR_REASON_"),
]


@pytest.mark.parametrize(("engine_enum", "proto_enum", "prefix"), _PAIRS)
def test_engine_enum_members_exist_in_the_contract(
    engine_enum: type[StrEnum], proto_enum: EnumDescriptor, prefix: str
) -> None:
    proto_names = {name.removeprefix(prefix) for name in proto_enum.values_by_name}
    missing = [member.name for member in engine_enum if member.name not in proto_names]
    assert missing == []


@pytest.mark.parametrize(
    ("engine_enum", "proto_enum", "prefix"),
    [pair for pair in _PAIRS if pair[0] is not enums.RejectReason],
)
def test_contract_enums_have_no_value_the_engine_lacks(
    engine_enum: type[StrEnum], proto_enum: EnumDescriptor, prefix: str
) -> None:
    # Apart from the zero value, every contract value must mean something to the engine.
    proto_names = {name.removeprefix(prefix) for name in proto_enum.values_by_name}
    proto_names.discard("UNSPECIFIED")
    assert proto_names == {member.name for member in engine_enum}
