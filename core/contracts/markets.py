"""Reference data and balances: assets, markets, modes and balances <-> their contract messages.

A market's `mode` field in a CreateMarketRequest is ignored (the contract says so): a new
market starts NORMAL, or in `initial_mode` when that is set. An asset's `display_name` is not
part of the engine's state (the engine keeps code and scale only) and is not echoed back.
"""

from __future__ import annotations

from exchange.common.v1 import types_pb2
from exchange.core.v1 import core_admin_pb2

from core.contracts import validation
from core.contracts.enums import MARKET_MODE, UnspecifiedEnumError
from core.contracts.errors import field_invalid
from core.engine import (
    BalanceView,
    CreateAsset,
    CreateMarket,
    MarketMode,
    MarketSpec,
    SetMarketMode,
)
from core.engine.results import MarketView


def create_asset(request: core_admin_pb2.CreateAssetRequest) -> CreateAsset:
    validation.idempotency_key(request.request_id, "request_id")
    return CreateAsset(
        asset=validation.asset(request.asset.asset, "asset.asset"), scale=request.asset.scale
    )


def asset_message(asset: str, scale: int) -> types_pb2.Asset:
    return types_pb2.Asset(asset=asset, scale=scale)


def market_mode(number: int, field: str = "mode") -> MarketMode:
    try:
        return MARKET_MODE.from_proto(number)
    except UnspecifiedEnumError:
        raise field_invalid(field, f"{field} must be NORMAL, CANCEL_ONLY or HALTED") from None


def create_market(request: core_admin_pb2.CreateMarketRequest) -> tuple[CreateMarket, MarketMode]:
    """The CreateMarket command and the mode the market should start in."""
    validation.idempotency_key(request.request_id, "request_id")
    market = request.market
    initial_mode = (
        MarketMode.NORMAL
        if request.initial_mode == types_pb2.MARKET_MODE_UNSPECIFIED
        else market_mode(request.initial_mode, "initial_mode")
    )
    spec = MarketSpec(
        symbol=validation.symbol(market.symbol, "market.symbol"),
        base_asset=validation.asset(market.base_asset, "market.base_asset"),
        quote_asset=validation.asset(market.quote_asset, "market.quote_asset"),
        base_scale=market.base_scale,
        quote_scale=market.quote_scale,
        price_tick=market.price_tick,
        lot_step=market.lot_step,
        min_quantity=market.min_quantity,
        max_quantity=market.max_quantity,
        min_notional=market.min_notional,
        price_band_bps=market.price_band_bps,
        maker_fee_ppm=market.maker_fee_ppm,
        taker_fee_ppm=market.taker_fee_ppm,
        reference_price=market.reference_price,
    )
    return CreateMarket(spec=spec), initial_mode


def set_market_mode(
    operator_id: str, request: core_admin_pb2.SetMarketModeRequest
) -> SetMarketMode:
    """Keyed by (operator, request_id) in the engine (ADR 0016). `reason` is not logged, so
    it is not part of what a retry is compared on."""
    request_id = validation.idempotency_key(request.request_id, "request_id")
    validation.optional_text(request.reason, "reason")
    return SetMarketMode(
        symbol=validation.symbol(request.symbol),
        mode=market_mode(request.mode),
        operator_id=operator_id,
        request_id=request_id,
    )


def market_spec_message(
    spec: MarketSpec, mode: MarketMode, *, reference_price: int | None = None
) -> types_pb2.Market:
    """A market's rules as the contract's `Market`; `reference_price` defaults to the spec's."""
    return types_pb2.Market(
        symbol=spec.symbol,
        base_asset=spec.base_asset,
        quote_asset=spec.quote_asset,
        base_scale=spec.base_scale,
        quote_scale=spec.quote_scale,
        price_tick=spec.price_tick,
        lot_step=spec.lot_step,
        min_quantity=spec.min_quantity,
        max_quantity=spec.max_quantity,
        min_notional=spec.min_notional,
        price_band_bps=spec.price_band_bps,
        maker_fee_ppm=spec.maker_fee_ppm,
        taker_fee_ppm=spec.taker_fee_ppm,
        reference_price=spec.reference_price if reference_price is None else reference_price,
        mode=MARKET_MODE.to_proto(mode),  # type: ignore[arg-type]
    )


def market_message(view: MarketView) -> types_pb2.Market:
    return market_spec_message(view.spec, view.mode, reference_price=view.reference_price)


def balance_message(view: BalanceView) -> types_pb2.Balance:
    return types_pb2.Balance(asset=view.asset, available=view.available, held=view.held)


def engine_balance_message(view: BalanceView) -> core_admin_pb2.EngineBalance:
    return core_admin_pb2.EngineBalance(
        account_id=view.account_id, asset=view.asset, available=view.available, held=view.held
    )
