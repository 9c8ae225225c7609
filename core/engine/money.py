"""Integer money arithmetic: minor units, notional, fees and price bands.

Money rules (decided):
- Every amount is a Python int in minor units of its asset (asset scale = decimals).
  Quantities are base-asset minor units. A price is quote-asset minor units per ONE WHOLE
  base unit (10**base_scale base minor units): 50,000.00 USDT/BTC with USDT scale 6 is
  50_000_000_000.
- notional(price, quantity) = price * quantity // 10**base_scale and must be EXACT. Market
  configuration guarantees it ((price_tick * lot_step) % 10**base_scale == 0); `notional`
  re-checks at runtime and raises EngineInvariantError if a remainder ever appears.
- Fees are quote-asset amounts, fee = ceil(notional * fee_ppm / 1_000_000), rounded in
  favour of the exchange, on each order's cumulative notional: fees.py computes every fee.
- Every amount the engine accepts or holds fits int64 (AMOUNT_OUT_OF_RANGE otherwise).
- No float anywhere.
"""

from __future__ import annotations

from typing import Final

from core.engine.errors import EngineInvariantError

INT64_MAX: Final = 2**63 - 1
PPM: Final = 1_000_000  # fee rates are parts per million
BPS: Final = 10_000  # price bands are basis points


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer ceiling of numerator / denominator for a positive denominator."""
    return -(-numerator // denominator)


def notional(price: int, quantity: int, base_unit: int) -> int:
    """Quote minor units for `quantity` base minor units at `price`; exact or raise."""
    value, remainder = divmod(price * quantity, base_unit)
    if remainder:
        msg = f"inexact notional: price={price} quantity={quantity} base_unit={base_unit}"
        raise EngineInvariantError(msg)
    return value


def band_price_max(reference_price: int, band_bps: int) -> int:
    """Highest price inside the band: floor(reference * (1 + band))."""
    return reference_price * (BPS + band_bps) // BPS


def band_price_min(reference_price: int, band_bps: int) -> int:
    """Lowest price inside the band: ceil(reference * (1 - band))."""
    return ceil_div(reference_price * (BPS - band_bps), BPS)


def price_within_band(price: int, reference_price: int, band_bps: int) -> bool:
    """reference * (1 - band) <= price <= reference * (1 + band), in integers."""
    scaled = price * BPS
    return reference_price * (BPS - band_bps) <= scaled <= reference_price * (BPS + band_bps)
