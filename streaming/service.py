"""`exchange.marketdata.v1.MarketDataService` history reads over ClickHouse (the gateway
forwards ListCandles here: `EDGE_MARKET_HISTORY_ADDRESS`), plus gRPC health.

- ListCandles: every interval (1m stored, 5m/1h/1d derived); open times in
  [start_time, end_time); unset start: the newest `limit` candles; unset end: no bound;
  limit 0 -> 500, at most 1000; oldest first.
- ListTrades: newest (highest seq) first; page_size 0 -> 100, at most 1000; the page token
  is the seq to continue below.
- Every other method answers UNIMPLEMENTED (the gateway serves them from Redis and the core).

Errors: gRPC status + ErrorInfo (streaming/errors.py): FIELD_INVALID, PAGE_TOKEN_INVALID;
a history store failure is DEPENDENCY_UNAVAILABLE; anything else INTERNAL (logged).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import grpc
from exchange.common.v1 import errors_pb2
from exchange.marketdata.v1 import marketdata_pb2, marketdata_pb2_grpc, types_pb2

from common import page_tokens
from common.unary_handlers import RequestT, ResponseT, ServicerT, answer_refusals
from streaming.codec import candle_message, public_trade_message, timestamp_ns
from streaming.errors import StreamingServiceError, field_invalid
from streaming.history import CandleQuery, HistoryStore

LOGGER: Final = logging.getLogger("streaming.service")
SERVICE_NAME: Final = "exchange.marketdata.v1.MarketDataService"
CANDLE_LIMIT_DEFAULT: Final = 500
CANDLE_LIMIT_MAX: Final = 1000
TRADE_PAGE_DEFAULT: Final = 100
TRADE_PAGE_MAX: Final = 1000
SEQ_END: Final = 2**63
ResultT = TypeVar("ResultT")

INTERVAL_NAMES: Final = {
    types_pb2.CANDLE_INTERVAL_UNSPECIFIED: "1m",
    types_pb2.CANDLE_INTERVAL_1M: "1m",
    types_pb2.CANDLE_INTERVAL_5M: "5m",
    types_pb2.CANDLE_INTERVAL_1H: "1h",
    types_pb2.CANDLE_INTERVAL_1D: "1d",
}
INTERVAL_VALUES: Final = {
    "1m": types_pb2.CANDLE_INTERVAL_1M,
    "5m": types_pb2.CANDLE_INTERVAL_5M,
    "1h": types_pb2.CANDLE_INTERVAL_1H,
    "1d": types_pb2.CANDLE_INTERVAL_1D,
}


def candle_query(request: marketdata_pb2.ListCandlesRequest) -> CandleQuery:
    """The validated query of a ListCandles request (StreamingServiceError if invalid)."""
    if not request.symbol:
        raise field_invalid("symbol", "symbol is required")
    interval = INTERVAL_NAMES.get(request.interval)
    if interval is None:
        raise field_invalid("interval", f"unknown interval {request.interval}")
    if not 0 <= request.limit <= CANDLE_LIMIT_MAX:
        raise field_invalid("limit", f"limit must be within 0..{CANDLE_LIMIT_MAX}")
    start_ns = timestamp_ns(request.start_time) if request.HasField("start_time") else None
    end_ns = timestamp_ns(request.end_time) if request.HasField("end_time") else None
    if start_ns is not None and end_ns is not None and end_ns < start_ns:
        raise field_invalid("end_time", "end_time is before start_time")
    return CandleQuery(
        symbol=request.symbol,
        interval=interval,
        start_ns=start_ns,
        end_ns=end_ns,
        limit=request.limit or CANDLE_LIMIT_DEFAULT,
    )


def trades_page(request: marketdata_pb2.ListTradesRequest) -> tuple[int, int]:
    """(before_seq, page_size) of a ListTrades request (StreamingServiceError if invalid)."""
    if not request.symbol:
        raise field_invalid("symbol", "symbol is required")
    if not 0 <= request.page_size <= TRADE_PAGE_MAX:
        raise field_invalid("page_size", f"page_size must be within 0..{TRADE_PAGE_MAX}")
    before_seq = SEQ_END
    if request.page_token:
        try:
            before_seq = page_tokens.decode_number(request.page_token)
        except page_tokens.PageTokenError:
            before_seq = 0
        if not 0 < before_seq < SEQ_END:
            raise StreamingServiceError(
                errors_pb2.ERROR_REASON_PAGE_TOKEN_INVALID, "page_token was not issued here"
            )
    return before_seq, request.page_size or TRADE_PAGE_DEFAULT


def _status_of(error: Exception) -> grpc.Status:
    """A StreamingServiceError's named status; anything else is a bug: INTERNAL, logged."""
    if not isinstance(error, StreamingServiceError):
        LOGGER.error("history RPC failed", exc_info=error)
        error = StreamingServiceError(errors_pb2.ERROR_REASON_INTERNAL, "internal error")
    return error.grpc_status()


def unary(
    handler: Callable[[ServicerT, RequestT, Any], Awaitable[ResponseT]],
) -> Callable[[ServicerT, RequestT, Any], Awaitable[ResponseT]]:
    """Refusals answered with their named status (common/unary_handlers.py)."""
    return answer_refusals(handler, _status_of)


class MarketHistoryService(marketdata_pb2_grpc.MarketDataServiceServicer):
    """ListCandles and ListTrades from the history store (blocking calls off the loop)."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store

    @unary
    async def ListCandles(  # noqa: N802 - the generated servicer's name
        self,
        request: marketdata_pb2.ListCandlesRequest,
        context: grpc.aio.ServicerContext[Any, Any],  # noqa: ARG002 (the wrapper answers)
    ) -> marketdata_pb2.ListCandlesResponse:
        query = candle_query(request)
        candles = await self._read(lambda: self.store.list_candles(query))
        interval = INTERVAL_VALUES[query.interval]
        response = marketdata_pb2.ListCandlesResponse()
        for candle in candles:
            message = candle_message(candle)
            message.interval = interval
            response.candles.append(message)
        return response

    @unary
    async def ListTrades(  # noqa: N802 - the generated servicer's name
        self,
        request: marketdata_pb2.ListTradesRequest,
        context: grpc.aio.ServicerContext[Any, Any],  # noqa: ARG002 (the wrapper answers)
    ) -> marketdata_pb2.ListTradesResponse:
        before_seq, page_size = trades_page(request)
        trades = await self._read(
            lambda: self.store.list_trades(
                request.symbol, before_seq=before_seq, limit=page_size + 1
            )
        )
        response = marketdata_pb2.ListTradesResponse(
            trades=[public_trade_message(trade) for trade in trades[:page_size]]
        )
        if len(trades) > page_size:
            response.next_page_token = page_tokens.encode_number(trades[page_size - 1].seq)
        return response

    async def _read(self, read: Callable[[], ResultT]) -> ResultT:
        try:
            return await asyncio.to_thread(read)
        except Exception as error:  # chdb / clickhouse-connect raise many kinds
            LOGGER.exception("history store read failed")
            raise StreamingServiceError(
                errors_pb2.ERROR_REASON_DEPENDENCY_UNAVAILABLE, "history store unavailable"
            ) from error

    async def _unimplemented(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "served by the gateway, not the history service"
        )

    # The rest of the service is the gateway's (Redis latest state, the core's markets).

    async def ListAssets(self, request: Any, context: Any) -> Any:  # noqa: N802
        del request
        await self._unimplemented(context)

    async def ListMarkets(self, request: Any, context: Any) -> Any:  # noqa: N802
        del request
        await self._unimplemented(context)

    async def GetMarket(self, request: Any, context: Any) -> Any:  # noqa: N802
        del request
        await self._unimplemented(context)

    async def GetOrderBook(self, request: Any, context: Any) -> Any:  # noqa: N802
        del request
        await self._unimplemented(context)

    async def GetTicker(self, request: Any, context: Any) -> Any:  # noqa: N802
        del request
        await self._unimplemented(context)

    async def ListTickers(self, request: Any, context: Any) -> Any:  # noqa: N802
        del request
        await self._unimplemented(context)
