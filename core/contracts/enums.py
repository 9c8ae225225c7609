"""Engine enums <-> contract enums.

The engine's members are named like the contract's values without the proto prefix
(`Side.BUY` <-> `SIDE_BUY`; tests/contract/test_engine_vocabulary.py keeps it so), so every
mapping here is built from the names once, at import, and is a dict lookup at run time.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Generic, TypeVar

from exchange.common.v1 import errors_pb2, types_pb2
from google.protobuf.descriptor import EnumDescriptor

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


class UnspecifiedEnumError(ValueError):
    """A contract enum carried its zero (`*_UNSPECIFIED`) or an unknown value."""

    def __init__(self, enum_name: str, value: int) -> None:
        super().__init__(f"{enum_name}: value {value} is unspecified or unknown")
        self.enum_name = enum_name
        self.value = value


E = TypeVar("E", bound=StrEnum)


class _EnumMapping(Generic[E]):
    """One engine enum and its contract enum: `to_proto(member) -> int`, `from_proto(int)`."""

    __slots__ = ("_from_proto", "_name", "_to_proto")

    def __init__(self, engine_enum: type[E], proto_enum: EnumDescriptor, prefix: str) -> None:
        self._name = proto_enum.name
        self._to_proto: dict[E, int] = {
            member: proto_enum.values_by_name[prefix + member.name].number for member in engine_enum
        }
        self._from_proto: dict[int, E] = {
            number: member for member, number in self._to_proto.items()
        }

    def to_proto(self, member: E) -> int:
        return self._to_proto[member]

    def from_proto(self, number: int) -> E:
        """The engine member for a contract value; `UnspecifiedEnumError` for 0 or unknown."""
        member = self._from_proto.get(number)
        if member is None:
            raise UnspecifiedEnumError(self._name, number)
        return member


SIDE: Final = _EnumMapping(Side, types_pb2.Side.DESCRIPTOR, "SIDE_")
ORDER_TYPE: Final = _EnumMapping(OrderType, types_pb2.OrderType.DESCRIPTOR, "ORDER_TYPE_")
TIME_IN_FORCE: Final = _EnumMapping(TimeInForce, types_pb2.TimeInForce.DESCRIPTOR, "TIME_IN_FORCE_")
SELF_TRADE_PREVENTION: Final = _EnumMapping(
    SelfTradePrevention, types_pb2.SelfTradePrevention.DESCRIPTOR, "SELF_TRADE_PREVENTION_"
)
MARKET_MODE: Final = _EnumMapping(MarketMode, types_pb2.MarketMode.DESCRIPTOR, "MARKET_MODE_")
ORDER_STATUS: Final = _EnumMapping(OrderStatus, types_pb2.OrderStatus.DESCRIPTOR, "ORDER_STATUS_")
CANCEL_REASON: Final = _EnumMapping(
    CancelReason, types_pb2.CancelReason.DESCRIPTOR, "CANCEL_REASON_"
)
REJECT_REASON: Final = _EnumMapping(
    RejectReason, errors_pb2.ErrorReason.DESCRIPTOR, "ERROR_REASON_"
)
