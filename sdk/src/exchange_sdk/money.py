"""Exact conversion between human decimal amounts and the wire's minor units.

Invariants:
- No float ever: inputs are ``Decimal``, ``str`` or ``int``; a ``float`` is refused
  because it cannot say which decimal the caller meant.
- Never rounds: a value with more fractional digits than ``scale`` is refused with
  PRECISION_EXCEEDED; the caller decides how to round, explicitly.
- The result fits the wire's int64, else AMOUNT_OUT_OF_RANGE.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from exchange_sdk.errors import AmountOutOfRangeError, PrecisionExceededError

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
SCALE_MAX = 18

DecimalInput = Decimal | str | int


def _as_decimal(value: DecimalInput) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise TypeError(f"amounts are Decimal, str or int, not {type(value).__name__}")
    try:
        decimal_value = Decimal(value)
    except InvalidOperation as error:
        raise ValueError(f"not a decimal number: {value!r}") from error
    if not decimal_value.is_finite():
        raise ValueError(f"not a finite decimal number: {value!r}")
    return decimal_value


def _check_scale(scale: int) -> None:
    if not 0 <= scale <= SCALE_MAX:
        raise ValueError(f"scale must be between 0 and {SCALE_MAX}, got {scale}")


def to_minor_units(value: DecimalInput, *, scale: int) -> int:
    """``value`` whole units as an integer count of 10^-scale units, exactly.

    >>> to_minor_units("1.5", scale=8)
    150000000
    """
    _check_scale(scale)
    decimal_value = _as_decimal(value)
    # Integer arithmetic on the decimal's own digits: no decimal context, so no
    # silent rounding however many digits the value has.
    sign, digits, exponent = decimal_value.as_tuple()
    if not isinstance(exponent, int):  # pragma: no cover - _as_decimal refuses non-finite
        raise TypeError("non-finite decimal")
    coefficient = int("".join(map(str, digits)) or "0")
    shift = exponent + scale
    if shift >= 0:
        units = coefficient * int(10**shift)
    else:
        units, remainder = divmod(coefficient, int(10**-shift))
        if remainder:
            raise PrecisionExceededError(
                f"{value} has more than {scale} decimal places",
                metadata={"value": str(value), "scale": str(scale)},
            )
    if sign:
        units = -units
    if not INT64_MIN <= units <= INT64_MAX:
        raise AmountOutOfRangeError(
            f"{value} at scale {scale} does not fit in int64",
            metadata={"value": str(value), "scale": str(scale)},
        )
    return units


def from_minor_units(units: int, *, scale: int) -> Decimal:
    """An integer count of 10^-scale units as a ``Decimal`` with exactly ``scale`` places.

    >>> from_minor_units(150000000, scale=8)
    Decimal('1.50000000')
    """
    _check_scale(scale)
    if isinstance(units, bool) or not isinstance(units, int):
        raise TypeError(f"minor units are int, not {type(units).__name__}")
    digits = tuple(int(digit) for digit in str(abs(units)))
    return Decimal((1 if units < 0 else 0, digits, -scale))
