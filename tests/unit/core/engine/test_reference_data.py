"""CreateAsset / CreateMarket / SetMarketMode and market configuration validation."""

from __future__ import annotations

import pytest

from core.engine import (
    CreateAsset,
    CreateMarket,
    Engine,
    MarketMode,
    RejectReason,
    SetMarketMode,
)
from core.engine.events import AssetCreated, MarketCreated, MarketModeChanged
from core.engine.testing import BTC, EngineDriver, btc_usdt_spec, events_of


@pytest.fixture
def assets_only() -> EngineDriver:
    driver = EngineDriver(Engine())
    driver.apply(CreateAsset(asset="BTC", scale=8))
    driver.apply(CreateAsset(asset="USDT", scale=6))
    return driver


def test_create_asset_emits_account_stream_event() -> None:
    driver = EngineDriver()
    result = driver.apply(CreateAsset(asset="ETH", scale=18))
    assert result.outcome.accepted
    (event,) = events_of(result, AssetCreated)
    assert (event.symbol, event.seq, event.asset, event.scale) == ("", 1, "ETH", 18)
    assert driver.engine.assets() == {"ETH": 18}


def test_create_asset_twice_is_rejected(assets_only: EngineDriver) -> None:
    result = assets_only.apply(CreateAsset(asset="BTC", scale=8))
    assert result.outcome.reason is RejectReason.ASSET_ALREADY_EXISTS
    assert result.events == ()


@pytest.mark.parametrize(("asset", "scale"), [("", 2), ("X" * 17, 2), ("ETH", -1), ("ETH", 19)])
def test_invalid_asset_is_rejected(asset: str, scale: int) -> None:
    result = EngineDriver().apply(CreateAsset(asset=asset, scale=scale))
    assert result.outcome.reason is RejectReason.MARKET_CONFIG_INVALID


def test_create_market(assets_only: EngineDriver) -> None:
    result = assets_only.apply(CreateMarket(spec=btc_usdt_spec()))
    assert result.outcome.accepted
    (event,) = events_of(result, MarketCreated)
    assert (event.symbol, event.seq) == ("BTC-USDT", 1)
    view = assets_only.engine.market("BTC-USDT")
    assert view is not None
    assert view.mode is MarketMode.NORMAL


def test_create_market_twice_is_rejected(assets_only: EngineDriver) -> None:
    assets_only.apply(CreateMarket(spec=btc_usdt_spec()))
    result = assets_only.apply(CreateMarket(spec=btc_usdt_spec()))
    assert result.outcome.reason is RejectReason.MARKET_ALREADY_EXISTS


@pytest.mark.parametrize("field", ["base_asset", "quote_asset"])
def test_market_with_unknown_asset_is_rejected(assets_only: EngineDriver, field: str) -> None:
    spec = btc_usdt_spec(**{field: "DOGE"})
    result = assets_only.apply(CreateMarket(spec=spec))
    assert result.outcome.reason is RejectReason.ASSET_UNKNOWN


INVALID_OVERRIDES: list[dict[str, int | str]] = [
    {"symbol": ""},
    {"symbol": "S" * 33},
    {"quote_asset": "BTC"},  # base == quote
    {"base_scale": 6},  # disagrees with the asset
    {"quote_scale": 8},
    {"price_tick": 0},
    {"lot_step": 0},
    {"min_quantity": 0},
    {"max_quantity": 0},
    {"reference_price": 0},
    {"min_notional": -1},
    {"min_quantity": 2 * BTC, "max_quantity": BTC},
    {"price_band_bps": 0},
    {"price_band_bps": 10_001},
    {"maker_fee_ppm": -1},
    {"maker_fee_ppm": 3_000, "taker_fee_ppm": 2_000},  # maker above taker
    {"taker_fee_ppm": 1_000_001},
    {"min_quantity": 15_000},  # not a multiple of lot_step
    {"max_quantity": 100 * BTC + 1},
    {"reference_price": 50_000_000_001},  # not a multiple of price_tick
    {"price_tick": 1, "lot_step": 1},  # (tick * lot) % 10**8 != 0: inexact notionals
    {"price_tick": 10_000, "lot_step": 1_000, "min_quantity": 1_000},
]


@pytest.mark.parametrize("overrides", INVALID_OVERRIDES)
def test_invalid_market_config_is_rejected(
    assets_only: EngineDriver, overrides: dict[str, int | str]
) -> None:
    result = assets_only.apply(CreateMarket(spec=btc_usdt_spec(**overrides)))
    assert result.outcome.reason is RejectReason.MARKET_CONFIG_INVALID
    assert result.events == ()
    assert assets_only.engine.symbols() == []


def test_exactness_rule_accepts_coarser_pairs(assets_only: EngineDriver) -> None:
    spec = btc_usdt_spec(price_tick=1_000_000, lot_step=100, min_quantity=100)
    assert assets_only.apply(CreateMarket(spec=spec)).outcome.accepted


def test_set_market_mode(driver: EngineDriver) -> None:
    result = driver.apply(SetMarketMode(symbol="BTC-USDT", mode=MarketMode.HALTED))
    (event,) = events_of(result, MarketModeChanged)
    assert (event.mode, event.previous_mode) == (MarketMode.HALTED, MarketMode.NORMAL)
    view = driver.engine.market("BTC-USDT")
    assert view is not None
    assert view.mode is MarketMode.HALTED


def test_set_mode_of_unknown_market(driver: EngineDriver) -> None:
    result = driver.apply(SetMarketMode(symbol="NOPE", mode=MarketMode.HALTED))
    assert result.outcome.reason is RejectReason.SYMBOL_UNKNOWN
    assert result.events == ()
