"""The hot path's positional constructors build genuine, equal, immutable instances."""

from __future__ import annotations

import dataclasses
from typing import Any

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
from core.engine.errors import EngineInvariantError
from core.engine.fast_frozen import positional_constructor
from core.engine.results import ApplyResult, Outcome
from core.engine.testing import btc_usdt_spec

SAMPLES: dict[str, Any] = {
    "str": "x",
    "int": 7,
    "bool": True,
    "Side": Side.SELL,
    "OrderType": OrderType.MARKET,
    "TimeInForce": TimeInForce.FOK,
    "SelfTradePrevention": SelfTradePrevention.CANCEL_BOTH,
    "MarketMode": MarketMode.HALTED,
    "CancelReason": CancelReason.PRICE_BAND,
    "RejectReason": RejectReason.FOK_UNFILLABLE,
    "RejectReason | None": RejectReason.NO_LIQUIDITY,
    "OrderStatus | None": OrderStatus.EXPIRED,
    "tuple[int, ...]": (1, 2),
    "MarketSpec": btc_usdt_spec(),
    "Outcome": Outcome(engine_seq=1),
    "tuple[Event, ...]": (),
}
FROZEN_TYPES = [
    value
    for value in vars(events_module).values()
    if isinstance(value, type)
    and dataclasses.is_dataclass(value)
    and value.__module__ == events_module.__name__
] + [Outcome, ApplyResult]


def sample_values(frozen_type: type[Any]) -> dict[str, Any]:
    values = {}
    for index, field in enumerate(dataclasses.fields(frozen_type)):
        sample = SAMPLES[str(field.type)]
        values[field.name] = sample + index if str(field.type) == "int" else sample
    return values


@pytest.mark.parametrize("frozen_type", FROZEN_TYPES, ids=lambda t: t.__name__)
def test_positional_constructor_builds_an_equal_frozen_instance(frozen_type: type[Any]) -> None:
    values = sample_values(frozen_type)
    built = positional_constructor(frozen_type)(*values.values())
    expected = frozen_type(**values)
    assert type(built) is frozen_type
    assert built == expected
    assert hash(built) == hash(expected)
    assert repr(built) == repr(expected)
    first_field = dataclasses.fields(frozen_type)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, first_field, None)


def test_rejects_a_mutable_dataclass() -> None:
    @dataclasses.dataclass(slots=True)
    class Mutable:
        value: int

    with pytest.raises(EngineInvariantError):
        positional_constructor(Mutable)
