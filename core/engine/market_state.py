"""Runtime state of one market: its spec's hot fields, mode, reference price, book and
event stream (what changes as commands apply; the spec itself is market.py's)."""

from __future__ import annotations

from core.engine.balances import Balance
from core.engine.book import OrderBook
from core.engine.enums import MarketMode
from core.engine.market import MarketSpec


class Market:
    """Runtime state of one market: spec (with hot fields copied out), mode, book, stream."""

    __slots__ = (
        "band_bps",
        "base_asset",
        "base_unit",
        "book",
        "cells",
        "lot_step",
        "maker_fee_ppm",
        "max_quantity",
        "min_notional",
        "min_quantity",
        "mode",
        "price_tick",
        "quote_asset",
        "reference_price",
        "spec",
        "stream_seq",
        "symbol",
        "taker_fee_ppm",
    )

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self.base_asset = spec.base_asset
        self.quote_asset = spec.quote_asset
        self.base_unit = 10**spec.base_scale
        self.price_tick = spec.price_tick
        self.lot_step = spec.lot_step
        self.min_quantity = spec.min_quantity
        self.max_quantity = spec.max_quantity
        self.min_notional = spec.min_notional
        self.band_bps = spec.price_band_bps
        self.maker_fee_ppm = spec.maker_fee_ppm
        self.taker_fee_ppm = spec.taker_fee_ppm
        self.reference_price = spec.reference_price
        self.mode = MarketMode.NORMAL
        self.stream_seq = 0
        self.book = OrderBook(spec.symbol)
        # Derived cache (not state): account id -> (base cell, quote cell) of this market, filled
        # when an account first places here. Cells are never removed from Engine._balances.
        self.cells: dict[str, tuple[Balance, Balance]] = {}

    def next_seq(self) -> int:
        self.stream_seq += 1
        return self.stream_seq
