"""Reference data: assets and market specifications, and their validation.

Invariants of a valid market (checked by `validate_market_spec`, else MARKET_CONFIG_INVALID):
- base and quote assets exist, differ, and their scales equal base_scale / quote_scale;
- price_tick, lot_step, min_quantity, max_quantity, reference_price are positive int64;
- min_quantity <= max_quantity, both multiples of lot_step; reference_price is a multiple of
  price_tick; min_notional is a non-negative int64;
- (price_tick * lot_step) % 10**base_scale == 0, so every notional is exact;
- 1 <= price_band_bps <= 10_000;
- 0 <= maker_fee_ppm <= taker_fee_ppm <= 1_000_000 (a buy reserves the taker fee, which then
  covers every fill whether it ends up maker or taker).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from core.engine.enums import RejectReason
from core.engine.money import BPS, INT64_MAX, PPM

SYMBOL_LENGTH_MAX: Final = 32
ASSET_CODE_LENGTH_MAX: Final = 16
ASSET_SCALE_MAX: Final = 18


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketSpec:
    """A spot market's static configuration. Amounts in minor units (see money.py)."""

    symbol: str
    base_asset: str
    quote_asset: str
    base_scale: int
    quote_scale: int
    price_tick: int
    lot_step: int
    min_quantity: int
    max_quantity: int
    min_notional: int
    price_band_bps: int
    maker_fee_ppm: int
    taker_fee_ppm: int
    reference_price: int


def validate_asset(asset: str, scale: int) -> RejectReason | None:
    """Reference-data errors of an asset are reported as MARKET_CONFIG_INVALID."""
    if not asset or len(asset) > ASSET_CODE_LENGTH_MAX:
        return RejectReason.MARKET_CONFIG_INVALID
    if not 0 <= scale <= ASSET_SCALE_MAX:
        return RejectReason.MARKET_CONFIG_INVALID
    return None


def _positive_int64(value: int) -> bool:
    return 0 < value <= INT64_MAX


def validate_market_spec(spec: MarketSpec, asset_scales: dict[str, int]) -> RejectReason | None:
    """Return the rejection for an invalid spec, or None. Existence is checked by the caller."""
    if spec.base_asset not in asset_scales or spec.quote_asset not in asset_scales:
        return RejectReason.ASSET_UNKNOWN
    checks = (
        0 < len(spec.symbol) <= SYMBOL_LENGTH_MAX,
        spec.base_asset != spec.quote_asset,
        asset_scales[spec.base_asset] == spec.base_scale,
        asset_scales[spec.quote_asset] == spec.quote_scale,
        _positive_int64(spec.price_tick),
        _positive_int64(spec.lot_step),
        _positive_int64(spec.min_quantity),
        _positive_int64(spec.max_quantity),
        _positive_int64(spec.reference_price),
        0 <= spec.min_notional <= INT64_MAX,
        spec.min_quantity <= spec.max_quantity,
        1 <= spec.price_band_bps <= BPS,
        0 <= spec.maker_fee_ppm <= spec.taker_fee_ppm <= PPM,
    )
    if not all(checks):
        return RejectReason.MARKET_CONFIG_INVALID
    step_checks = (
        spec.min_quantity % spec.lot_step == 0,
        spec.max_quantity % spec.lot_step == 0,
        spec.reference_price % spec.price_tick == 0,
        (spec.price_tick * spec.lot_step) % (10**spec.base_scale) == 0,
    )
    if not all(step_checks):
        return RejectReason.MARKET_CONFIG_INVALID
    return None
