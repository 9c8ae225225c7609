"""The SDK's human-edge conversion is exact: it never rounds and never floats."""

from __future__ import annotations

from decimal import Decimal

import pytest
from exchange_sdk.errors import AmountOutOfRangeError, PrecisionExceededError
from exchange_sdk.money import INT64_MAX, INT64_MIN, from_minor_units, to_minor_units
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("value", "scale", "units"),
    [
        ("1.5", 8, 150_000_000),
        ("0.00000001", 8, 1),
        ("50000.01", 6, 50_000_010_000),
        (Decimal("1E+2"), 2, 10_000),
        ("-0.005", 3, -5),
        (7, 0, 7),
        ("92233720368.54775807", 8, INT64_MAX),
        ("1.50000000000000000000000000000000000", 8, 150_000_000),
    ],
)
def test_to_minor_units(value: Decimal | str | int, scale: int, units: int) -> None:
    assert to_minor_units(value, scale=scale) == units


@pytest.mark.parametrize(("value", "scale"), [("0.123456789", 8), ("1.5", 0), ("0.0000005", 6)])
def test_too_many_decimals_is_refused_not_rounded(value: str, scale: int) -> None:
    with pytest.raises(PrecisionExceededError) as raised:
        to_minor_units(value, scale=scale)
    assert raised.value.reason == "PRECISION_EXCEEDED"


@pytest.mark.parametrize("value", ["92233720368.54775808", "-92233720368.54775809"])
def test_beyond_int64_is_refused(value: str) -> None:
    with pytest.raises(AmountOutOfRangeError) as raised:
        to_minor_units(value, scale=8)
    assert raised.value.reason == "AMOUNT_OUT_OF_RANGE"


def test_float_is_refused() -> None:
    with pytest.raises(TypeError):
        to_minor_units(0.1, scale=8)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["abc", "NaN", "Infinity", ""])
def test_non_numbers_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="decimal number"):
        to_minor_units(value, scale=8)


def test_from_minor_units_keeps_the_scale() -> None:
    assert str(from_minor_units(150_000_000, scale=8)) == "1.50000000"
    assert str(from_minor_units(-5, scale=3)) == "-0.005"
    assert str(from_minor_units(0, scale=2)) == "0.00"


@given(units=st.integers(min_value=INT64_MIN, max_value=INT64_MAX), scale=st.integers(0, 18))
def test_round_trip_is_exact_for_every_int64(units: int, scale: int) -> None:
    assert to_minor_units(from_minor_units(units, scale=scale), scale=scale) == units
    assert to_minor_units(str(from_minor_units(units, scale=scale)), scale=scale) == units
