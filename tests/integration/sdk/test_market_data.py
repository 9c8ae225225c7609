"""Market data through MarketDataService, from the core's real event log: specs and asset
scales looked up by unseeded clients, the order book (levels and seq) after crossing and
resting orders, recent trades newest first with paging, tickers from Redis as streaming/
writes them, candles forwarded to the (stand-in) history server."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from exchange.marketdata.v1 import types_pb2 as marketdata_types_pb2
from exchange_sdk import (
    CandleInterval,
    NotFoundError,
    OrderBook,
    OrderStatus,
    Side,
)

from infra.local.reference_data import MARKETS
from tests.integration.edge.harness import ALICE, BOB
from tests.integration.sdk.conftest import MARKET_SPECS, SdkEdge, until


def test_unseeded_clients_look_up_specs_and_scales(sdk_edge: SdkEdge) -> None:
    with sdk_edge.unseeded_client(ALICE) as alice:
        assert alice.catalog.markets == {}
        assert {asset.asset: asset.scale for asset in alice.list_assets()} == {
            "BTC": 8,
            "ETH": 8,
            "USDT": 6,
        }
        assert alice.get_market("ETH-USDT") == next(
            spec for spec in MARKET_SPECS if spec.symbol == "ETH-USDT"
        )
        assert set(alice.list_markets()) == set(MARKET_SPECS)
        with pytest.raises(NotFoundError) as unknown:
            alice.get_market("DOGE-USDT")
        assert unknown.value.reason == "SYMBOL_UNKNOWN"
    with sdk_edge.unseeded_client(BOB) as bob:
        placed = bob.place_order("ETH-USDT", "buy", "0.01", price="2990.5")
        assert placed.order.price == Decimal("2990.50")
        assert bob.cancel_order(placed.order.order_id).status is OrderStatus.CANCELLED
    with sdk_edge.unseeded_client(BOB) as bob:
        balances = {balance.asset: balance for balance in bob.get_balances().balances}
        assert balances["BTC"].available == Decimal("10.00000000")


def test_book_trades_ticker_and_candles(sdk_edge: SdkEdge) -> None:
    with sdk_edge.client(ALICE) as alice, sdk_edge.client(BOB) as bob:
        empty = alice.get_order_book("BTC-USDT")
        # Bob rests two asks; Alice takes the first fully and part of the second, then bids.
        bob.place_order("BTC-USDT", "sell", "0.01", price="50000")
        bob.place_order("BTC-USDT", "sell", "0.03", price="50001.5")
        bob.place_order("BTC-USDT", "sell", "0.02", price="50001.5")
        taken = alice.place_order("BTC-USDT", "buy", "0.02", price="50001.5", time_in_force="ioc")
        assert [fill.price for fill in taken.fills] == [Decimal("50000"), Decimal("50001.5")]
        alice.place_order("BTC-USDT", "buy", "0.005", price="49990")

        def settled() -> OrderBook | None:
            book = alice.get_order_book("BTC-USDT")
            return book if book.bids and book.seq >= empty.seq + 5 else None

        book = until(settled, what="the orders in the projected book")
        assert [(level.price, level.quantity, level.order_count) for level in book.asks] == [
            (Decimal("50001.500000"), Decimal("0.04000000"), 2)
        ]
        assert [(level.price, level.quantity, level.order_count) for level in book.bids] == [
            (Decimal("49990"), Decimal("0.005"), 1)
        ]
        assert book.seq > empty.seq
        assert alice.get_order_book("BTC-USDT", depth=1).asks == book.asks

        trades = alice.list_trades("BTC-USDT").items
        assert [(trade.price, trade.quantity, trade.taker_side) for trade in trades[:2]] == [
            (Decimal("50001.5"), Decimal("0.01"), Side.BUY),
            (Decimal("50000"), Decimal("0.01"), Side.BUY),
        ]
        assert trades[0].seq > trades[1].seq  # newest first
        first = alice.list_trades("BTC-USDT", page_size=1)
        assert first.items == trades[:1]
        assert first.next_page_token
        second = alice.list_trades("BTC-USDT", page_size=1, page_token=first.next_page_token)
        assert second.items == trades[1:2]

        # No ticker stored yet: a zero ticker with the book's best prices.
        bare = alice.get_ticker("BTC-USDT")
        assert (bare.last, bare.best_bid, bare.best_ask) == (
            Decimal(0),
            Decimal("49990"),
            Decimal("50001.5"),
        )
        sdk_edge.set_ticker(
            marketdata_types_pb2.Ticker(
                symbol="BTC-USDT",
                open=50_000 * 10**6,
                high=50_001_500_000,
                low=50_000 * 10**6,
                last=50_001_500_000,
                volume=2 * 10**6,
                quote_volume=1_000_015 * 10**3,
                trade_count=2,
            )
        )
        ticker = alice.get_ticker("BTC-USDT")
        assert (ticker.last, ticker.volume, ticker.trade_count) == (
            Decimal("50001.5"),
            Decimal("0.02"),
            2,
        )
        assert ticker.quote_volume == Decimal("1000.015")
        assert (ticker.best_bid, ticker.best_ask) == (Decimal("49990"), Decimal("50001.5"))
        tickers = {one.symbol: one for one in alice.list_tickers()}
        assert set(tickers) == {market.symbol for market in MARKETS}
        assert tickers["BTC-USDT"].last == Decimal("50001.5")
        assert tickers["ETH-USDT"].last == 0

        candles = alice.list_candles(
            "BTC-USDT",
            interval=CandleInterval.ONE_HOUR,
            start_time=datetime(2023, 11, 14, tzinfo=UTC),
            limit=10,
        )
        assert [(c.interval, c.open, c.high, c.close, c.volume) for c in candles] == [
            (
                CandleInterval.ONE_HOUR,
                Decimal(50000),
                Decimal(50001),
                Decimal(50000),
                Decimal("0.01"),
            )
        ]
        forwarded = sdk_edge.history.requests[-1]
        assert (forwarded.symbol, forwarded.limit) == ("BTC-USDT", 10)
        assert forwarded.start_time.seconds == 1_699_920_000
        alice.cancel_all_orders()
        bob.cancel_all_orders()
