"""MarketDataService (exchange.marketdata.v1): public reads, no authentication.

Sources:
- assets, markets, order books and recent trades: the in-process projection of
  `core.events.v1` (gateway/market_data/projection.py);
- tickers: Redis `md:ticker:{SYMBOL}` (a serialized `Ticker`, written by streaming/), with
  best_bid / best_ask filled from the projected book at read time;
- candles (every interval) and trades older than the in-memory ring: the market history
  service (streaming/, ClickHouse) at `EDGE_MARKET_HISTORY_ADDRESS`, forwarded with a
  deadline; unset or unreachable -> UNAVAILABLE `DEPENDENCY_UNAVAILABLE`.
Errors carry ErrorInfo reasons: an unknown market is NOT_FOUND `SYMBOL_UNKNOWN`, a depth or
page size out of range `FIELD_INVALID`, a bad page token `PAGE_TOKEN_INVALID`.
"""

from __future__ import annotations

from typing import Final, cast

import grpc
from exchange.marketdata.v1 import marketdata_pb2, marketdata_pb2_grpc
from exchange.marketdata.v1 import types_pb2 as marketdata_types_pb2
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common import page_tokens
from gateway.api_key_service import Context, answers_edge_errors
from gateway.errors import EdgeError
from gateway.market_data.projection import Book, MarketDataProjection

DEPTH_DEFAULT: Final = 100
DEPTH_MAX: Final = 1000
TRADES_PAGE_DEFAULT: Final = 100
TRADES_PAGE_MAX: Final = 1000
CANDLES_DEFAULT: Final = 500
CANDLES_MAX: Final = 1000
HISTORY_DEADLINE_SECONDS: Final = 3.0
_BUY: Final = 1
_SELL: Final = 2


def ticker_key(symbol: str) -> str:
    """Redis key of a market's latest ticker (contract with streaming/)."""
    return f"md:ticker:{symbol}"


def candle_key(symbol: str, interval: str = "1m") -> str:
    """Redis key of a market's latest candle of `interval` (contract with streaming/)."""
    return f"md:candle:{symbol}:{interval}"


class MarketDataService(marketdata_pb2_grpc.MarketDataServiceServicer):
    def __init__(
        self,
        projection: MarketDataProjection,
        redis: Redis,
        *,
        history_address: str = "",
    ) -> None:
        self._projection = projection
        self._redis = redis
        self._history_address = history_address
        self._history_channel: grpc.aio.Channel | None = None

    async def close(self) -> None:
        if self._history_channel is not None:
            await self._history_channel.close()
            self._history_channel = None

    def _book(self, symbol: str) -> Book:
        if not symbol:
            raise EdgeError("FIELD_INVALID", "symbol is required", {"field": "symbol"})
        book = self._projection.book(symbol)
        if book is None:
            raise EdgeError("SYMBOL_UNKNOWN", f"no market {symbol!r}", {"symbol": symbol})
        return book

    def _history(self) -> marketdata_pb2_grpc.MarketDataServiceStub:
        if not self._history_address:
            message = "market history is not configured (EDGE_MARKET_HISTORY_ADDRESS)"
            raise EdgeError("DEPENDENCY_UNAVAILABLE", message, {"dependency": "market-history"})
        if self._history_channel is None:
            self._history_channel = grpc.aio.insecure_channel(self._history_address)
        return marketdata_pb2_grpc.MarketDataServiceStub(self._history_channel)

    @staticmethod
    def _unavailable(error: grpc.aio.AioRpcError) -> EdgeError:
        message = f"market history unavailable: {error.code().name} {error.details()}"
        return EdgeError("DEPENDENCY_UNAVAILABLE", message, {"dependency": "market-history"})

    @answers_edge_errors
    async def ListAssets(  # noqa: N802 - the generated servicer's method name
        self,
        request: marketdata_pb2.ListAssetsRequest,  # noqa: ARG002
        context: Context,  # noqa: ARG002
    ) -> marketdata_pb2.ListAssetsResponse:
        assets = self._projection.assets
        return marketdata_pb2.ListAssetsResponse(assets=[assets[name] for name in sorted(assets)])

    @answers_edge_errors
    async def ListMarkets(  # noqa: N802
        self,
        request: marketdata_pb2.ListMarketsRequest,  # noqa: ARG002
        context: Context,  # noqa: ARG002
    ) -> marketdata_pb2.ListMarketsResponse:
        books = self._projection.books
        return marketdata_pb2.ListMarketsResponse(
            markets=[books[symbol].market for symbol in sorted(books)]
        )

    @answers_edge_errors
    async def GetMarket(  # noqa: N802
        self,
        request: marketdata_pb2.GetMarketRequest,
        context: Context,  # noqa: ARG002
    ) -> marketdata_pb2.GetMarketResponse:
        return marketdata_pb2.GetMarketResponse(market=self._book(request.symbol).market)

    @answers_edge_errors
    async def GetOrderBook(  # noqa: N802
        self,
        request: marketdata_pb2.GetOrderBookRequest,
        context: Context,  # noqa: ARG002
    ) -> marketdata_pb2.GetOrderBookResponse:
        depth = _bounded(request.depth, "depth", default=DEPTH_DEFAULT, maximum=DEPTH_MAX)
        book = self._book(request.symbol)
        return marketdata_pb2.GetOrderBookResponse(book=book.snapshot(depth))

    @answers_edge_errors
    async def ListTrades(  # noqa: N802
        self,
        request: marketdata_pb2.ListTradesRequest,
        context: Context,  # noqa: ARG002
    ) -> marketdata_pb2.ListTradesResponse:
        page_size = _bounded(
            request.page_size, "page_size", default=TRADES_PAGE_DEFAULT, maximum=TRADES_PAGE_MAX
        )
        book = self._book(request.symbol)
        before_seq = _trade_token_seq(request.page_token)
        if before_seq and book.trades_dropped_seq and before_seq <= book.trades_dropped_seq + 1:
            # Older than the in-memory ring: the history service has them.
            try:
                history = cast(
                    "marketdata_pb2.ListTradesResponse",
                    await self._history().ListTrades(request, timeout=HISTORY_DEADLINE_SECONDS),  # type: ignore[misc]
                )
            except grpc.aio.AioRpcError as error:
                raise self._unavailable(error) from error
            return history
        page = []
        for trade in reversed(book.trades):  # newest first
            if before_seq and trade.seq >= before_seq:
                continue
            page.append(trade)
            if len(page) == page_size:
                break
        next_token = ""
        if len(page) == page_size:
            oldest = page[-1].seq
            has_more = (book.trades and book.trades[0].seq < oldest) or book.trades_dropped_seq
            if has_more:
                next_token = page_tokens.encode_number(oldest)
        elif book.trades_dropped_seq:
            # The ring ends here and holds every trade after `trades_dropped_seq` (a projection
            # started from a snapshot holds only the trades after it): older pages are the
            # history service's.
            next_token = page_tokens.encode_number(book.trades_dropped_seq + 1)
        return marketdata_pb2.ListTradesResponse(trades=page, next_page_token=next_token)

    @answers_edge_errors
    async def ListCandles(  # noqa: N802
        self,
        request: marketdata_pb2.ListCandlesRequest,
        context: Context,  # noqa: ARG002
    ) -> marketdata_pb2.ListCandlesResponse:
        self._book(request.symbol)
        _bounded(request.limit, "limit", default=CANDLES_DEFAULT, maximum=CANDLES_MAX)
        try:
            response = cast(
                "marketdata_pb2.ListCandlesResponse",
                await self._history().ListCandles(request, timeout=HISTORY_DEADLINE_SECONDS),  # type: ignore[misc]
            )
        except grpc.aio.AioRpcError as error:
            raise self._unavailable(error) from error
        return response

    @answers_edge_errors
    async def GetTicker(  # noqa: N802
        self,
        request: marketdata_pb2.GetTickerRequest,
        context: Context,  # noqa: ARG002
    ) -> marketdata_pb2.GetTickerResponse:
        book = self._book(request.symbol)
        stored = await self._stored_tickers([book.market.symbol])
        return marketdata_pb2.GetTickerResponse(ticker=_ticker(book, stored[0]))

    @answers_edge_errors
    async def ListTickers(  # noqa: N802
        self,
        request: marketdata_pb2.ListTickersRequest,  # noqa: ARG002
        context: Context,  # noqa: ARG002
    ) -> marketdata_pb2.ListTickersResponse:
        books = self._projection.books
        symbols = sorted(books)
        stored = await self._stored_tickers(symbols)
        return marketdata_pb2.ListTickersResponse(
            tickers=[
                _ticker(books[symbol], raw) for symbol, raw in zip(symbols, stored, strict=True)
            ]
        )

    async def _stored_tickers(self, symbols: list[str]) -> list[bytes | None]:
        if not symbols:
            return []
        try:
            values = cast(
                "list[bytes | None]", await self._redis.mget([ticker_key(s) for s in symbols])
            )
        except (RedisError, OSError) as error:
            message = "tickers unavailable: Redis did not answer"
            raise EdgeError("DEPENDENCY_UNAVAILABLE", message, {"dependency": "redis"}) from error
        return values


def _ticker(book: Book, raw: bytes | None) -> marketdata_types_pb2.Ticker:
    """The stored ticker (or a zero one: no trade yet) with the book's best prices now."""
    ticker = marketdata_types_pb2.Ticker()
    if raw:
        ticker.ParseFromString(raw)
    ticker.symbol = book.market.symbol
    ticker.best_bid = book.best(_BUY)
    ticker.best_ask = book.best(_SELL)
    return ticker


def _bounded(value: int, field: str, *, default: int, maximum: int) -> int:
    """A size field of the contract: 0 means `default`, else 1..`maximum` (FIELD_INVALID)."""
    size = value or default
    if not 0 < size <= maximum:
        message = f"{field} must be 1..{maximum} (0 means {default})"
        raise EdgeError("FIELD_INVALID", message, {"field": field})
    return size


def _trade_token_seq(token: str) -> int:
    if not token:
        return 0
    try:
        seq = page_tokens.decode_number(token)
    except page_tokens.PageTokenError:
        seq = 0
    if seq > 0:
        return seq
    raise EdgeError("PAGE_TOKEN_INVALID", "not a page token of ListTrades", {"field": "page_token"})
