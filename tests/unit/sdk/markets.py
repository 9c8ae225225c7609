"""The market specs the SDK's unit tests convert with (the local exchange's rules)."""

from __future__ import annotations

from exchange_sdk import MarketSpec

from infra.local.reference_data import MARKETS

BTC_USDT = MarketSpec.from_proto(next(m for m in MARKETS if m.symbol == "BTC-USDT"))
ETH_USDT = MarketSpec.from_proto(next(m for m in MARKETS if m.symbol == "ETH-USDT"))
