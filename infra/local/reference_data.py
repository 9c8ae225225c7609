"""The local exchange's assets and markets, listed through the core's admin API.

Listing is idempotent (the core answers a re-listing with identical rules as a success and
logs nothing), so `infra/up.sh` lists them on every start.
"""

from __future__ import annotations

from typing import Final

import grpc
from exchange.common.v1 import types_pb2
from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc

from common.identity_headers import operator_metadata

STACK_OPERATOR_ID: Final = "local-stack"

ASSETS: Final = (
    types_pb2.Asset(asset="BTC", scale=8, display_name="Bitcoin"),
    types_pb2.Asset(asset="ETH", scale=8, display_name="Ether"),
    types_pb2.Asset(asset="USDT", scale=6, display_name="Tether USD"),
)

_USDT: Final = 10**6
_COIN: Final = 10**8

MARKETS: Final = (
    # tick 0.01 USDT, lot 0.0001 BTC; maker 0.1 %, taker 0.2 %; band 10 % around 50,000.
    types_pb2.Market(
        symbol="BTC-USDT",
        base_asset="BTC",
        quote_asset="USDT",
        base_scale=8,
        quote_scale=6,
        price_tick=_USDT // 100,
        lot_step=_COIN // 10_000,
        min_quantity=_COIN // 10_000,
        max_quantity=100 * _COIN,
        min_notional=1 * _USDT,
        price_band_bps=1_000,
        maker_fee_ppm=1_000,
        taker_fee_ppm=2_000,
        reference_price=50_000 * _USDT,
        mode=types_pb2.MARKET_MODE_NORMAL,
    ),
    # tick 0.01 USDT, lot 0.001 ETH; band 10 % around 3,000.
    types_pb2.Market(
        symbol="ETH-USDT",
        base_asset="ETH",
        quote_asset="USDT",
        base_scale=8,
        quote_scale=6,
        price_tick=_USDT // 100,
        lot_step=_COIN // 1_000,
        min_quantity=_COIN // 1_000,
        max_quantity=1_000 * _COIN,
        min_notional=1 * _USDT,
        price_band_bps=1_000,
        maker_fee_ppm=1_000,
        taker_fee_ppm=2_000,
        reference_price=3_000 * _USDT,
        mode=types_pb2.MARKET_MODE_NORMAL,
    ),
)


def list_reference_data(core_address: str, *, timeout_seconds: float = 10.0) -> list[str]:
    """List every asset and market on the core at `core_address`; returns the symbols."""
    metadata = operator_metadata(STACK_OPERATOR_ID)
    with grpc.insecure_channel(core_address) as channel:
        admin = core_admin_pb2_grpc.CoreAdminServiceStub(channel)
        for asset in ASSETS:
            admin.CreateAsset(
                core_admin_pb2.CreateAssetRequest(asset=asset, request_id=f"asset-{asset.asset}"),
                metadata=metadata,
                timeout=timeout_seconds,
                wait_for_ready=True,
            )
        for market in MARKETS:
            admin.CreateMarket(
                core_admin_pb2.CreateMarketRequest(
                    market=market, request_id=f"market-{market.symbol}"
                ),
                metadata=metadata,
                timeout=timeout_seconds,
                wait_for_ready=True,
            )
    return [market.symbol for market in MARKETS]
