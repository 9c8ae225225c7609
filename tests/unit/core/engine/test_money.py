from __future__ import annotations

import pytest

from core.engine.errors import EngineInvariantError
from core.engine.fees import fee_for
from core.engine.money import (
    band_price_max,
    band_price_min,
    ceil_div,
    notional,
    price_within_band,
)
from core.engine.testing import BTC, USDT


def test_notional_of_one_btc_at_50k() -> None:
    assert notional(50_000 * USDT, BTC, BTC) == 50_000 * USDT


def test_notional_of_a_lot() -> None:
    # 0.0001 BTC at 50,000.01 USDT = 5.000001 USDT
    assert notional(50_000 * USDT + USDT // 100, BTC // 10_000, BTC) == 5_000_001


def test_inexact_notional_raises() -> None:
    with pytest.raises(EngineInvariantError):
        notional(1, 1, BTC)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(0, 7, 0), (1, 7, 1), (7, 7, 1), (8, 7, 2), (14, 7, 2)],
)
def test_ceil_div(numerator: int, denominator: int, expected: int) -> None:
    assert ceil_div(numerator, denominator) == expected


@pytest.mark.parametrize(
    ("amount", "fee_ppm", "expected"),
    [
        (1_000_000, 2_000, 2_000),  # exact
        (1, 2_000, 1),  # rounds up in favour of the exchange
        (499, 2_000, 1),
        (500, 2_000, 1),
        (501, 2_000, 2),
        (12_345, 0, 0),
    ],
)
def test_fee_is_integer_ceiling(amount: int, fee_ppm: int, expected: int) -> None:
    assert fee_for(amount, fee_ppm) == expected


def test_band_edges_are_integers_inside_the_band() -> None:
    assert band_price_max(1_000, 1_000) == 1_100
    assert band_price_min(1_000, 1_000) == 900
    assert band_price_max(999, 1) == 999  # floor(999.0999)
    assert band_price_min(999, 1) == 999  # ceil(998.9001)


@pytest.mark.parametrize(
    ("price", "inside"), [(899, False), (900, True), (1_000, True), (1_100, True), (1_101, False)]
)
def test_price_within_band(price: int, inside: bool) -> None:
    assert price_within_band(price, 1_000, 1_000) is inside
