"""The asyncio client: the same calls as ``exchange_sdk.client.Client``, awaited.

Request building and conversions are shared with the blocking client
(``exchange_sdk._protocol``); this module only runs them over ``grpc.aio``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import grpc
from exchange.trading.v1 import trading_pb2
from google.protobuf.message import Message

from exchange_sdk import _protocol as protocol
from exchange_sdk._protocol import MarketCatalog, Step
from exchange_sdk.errors import ExchangeError, UnavailableError, from_rpc_error
from exchange_sdk.models import (
    AmendOrder,
    Asset,
    Balances,
    BatchResult,
    CancelAllOrders,
    CancelOrder,
    Candle,
    CandleInterval,
    Fill,
    MarketSpec,
    Order,
    OrderBook,
    OrderCommand,
    OrderResult,
    OrderType,
    Page,
    PublicTrade,
    SelfTradePrevention,
    Side,
    Ticker,
    TimeInForce,
    Transfer,
    TransferKind,
)
from exchange_sdk.money import DecimalInput
from exchange_sdk.signing import ApiCredentials
from exchange_sdk.transport import DEFAULT_RETRY, AsyncGrpcTransport, AsyncTransport, RetryPolicy

ResultT = TypeVar("ResultT")


async def run_step_async(
    transport: AsyncTransport, step: Step[ResultT], timeout_seconds: float | None
) -> ResultT:
    """Drives a sans-io operation over an asyncio transport."""
    try:
        call = next(step)
        while True:
            response = await transport.unary(call, timeout_seconds=timeout_seconds)
            call = step.send(response)
    except StopIteration as finished:
        result: ResultT = finished.value
        return result


class AsyncClient:
    """A trader's asyncio connection to the exchange (gRPC through Envoy); the same calls as
    ``Client``, awaited.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        timeout_seconds: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        markets: Iterable[MarketSpec] = (),
        catalog: MarketCatalog | None = None,
        transport: AsyncTransport | None = None,
    ) -> None:
        self.catalog = protocol.catalog_of(markets, catalog)
        self.timeout_seconds = timeout_seconds
        credentials = ApiCredentials.of(api_key, api_secret)
        self._grpc: AsyncGrpcTransport | None = None
        if transport is None:
            self._grpc = AsyncGrpcTransport(
                endpoint,
                credentials=credentials,
                tls=tls,
                root_certificates=root_certificates,
                retry=retry,
                timeout_seconds=timeout_seconds,
            )
            transport = self._grpc
        self.transport = transport
        self.retry = retry

    async def _run(self, step: Step[ResultT], timeout_seconds: float | None = None) -> ResultT:
        return await run_step_async(self.transport, step, timeout_seconds)

    # ------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------ market data (public)
    async def list_assets(self) -> tuple[Asset, ...]:
        return await self._run(protocol.list_assets(self.catalog))

    async def list_markets(self) -> tuple[MarketSpec, ...]:
        return await self._run(protocol.list_markets(self.catalog))

    async def get_market(self, symbol: str, *, refresh: bool = False) -> MarketSpec:
        """A market's rules; cached after the first lookup unless ``refresh``."""
        return await self._run(protocol.get_market(self.catalog, symbol, refresh=refresh))

    async def get_order_book(self, symbol: str, *, depth: int = 0) -> OrderBook:
        return await self._run(protocol.get_order_book(self.catalog, symbol, depth=depth))

    async def list_trades(
        self, symbol: str, *, page_size: int = 0, page_token: str = ""
    ) -> Page[PublicTrade]:
        return await self._run(
            protocol.list_trades(self.catalog, symbol, page_size=page_size, page_token=page_token)
        )

    async def list_candles(
        self,
        symbol: str,
        *,
        interval: CandleInterval = CandleInterval.ONE_MINUTE,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        limit: int = 0,
    ) -> tuple[Candle, ...]:
        return await self._run(
            protocol.list_candles(
                self.catalog,
                symbol,
                interval=interval,
                start_time=start_time,
                end_time=end_time,
                limit=limit,
            )
        )

    async def get_ticker(self, symbol: str) -> Ticker:
        return await self._run(protocol.get_ticker(self.catalog, symbol))

    async def list_tickers(self) -> tuple[Ticker, ...]:
        return await self._run(protocol.list_tickers(self.catalog))

    # ------------------------------------------------------------ trading
    async def place_order(
        self,
        symbol: str,
        side: Side | str,
        quantity: DecimalInput | None = None,
        *,
        price: DecimalInput | None = None,
        order_type: OrderType | str | None = None,
        time_in_force: TimeInForce | str | None = None,
        quote_quantity: DecimalInput | None = None,
        post_only: bool = False,
        self_trade_prevention: SelfTradePrevention | str | None = None,
        client_order_id: str | None = None,
    ) -> OrderResult:
        """Places an order (LIMIT when a price is given, else MARKET). ``client_order_id``
        is the idempotency key (generated when omitted): placing again with the same id
        and the same order returns the original outcome."""
        command = protocol.place_command(
            symbol,
            side,
            quantity,
            price=price,
            order_type=order_type,
            time_in_force=time_in_force,
            quote_quantity=quote_quantity,
            post_only=post_only,
            self_trade_prevention=self_trade_prevention,
            client_order_id=client_order_id,
        )
        return await self._run(protocol.place_order(self.catalog, command))

    async def cancel_order(
        self,
        order_id: str | None = None,
        *,
        client_order_id: str | None = None,
        request_id: str | None = None,
    ) -> Order:
        command = CancelOrder(
            symbol="",
            order_id=order_id or "",
            client_order_id=client_order_id or "",
            request_id=request_id or "",
        )
        return await self._run(protocol.cancel_order(self.catalog, command))

    async def amend_order(
        self,
        order_id: str,
        *,
        symbol: str,
        new_quantity: DecimalInput | None = None,
        new_price: DecimalInput | None = None,
        request_id: str | None = None,
    ) -> OrderResult:
        command = AmendOrder(symbol, order_id, new_quantity, new_price, request_id or "")
        return await self._run(protocol.amend_order(self.catalog, command))

    async def cancel_all_orders(
        self, symbol: str | None = None, *, request_id: str | None = None
    ) -> tuple[Order, ...]:
        command = CancelAllOrders(symbol=symbol or "", request_id=request_id or "")
        return await self._run(protocol.cancel_all_orders(self.catalog, command))

    async def get_order(
        self, order_id: str | None = None, *, client_order_id: str | None = None
    ) -> Order:
        return await self._run(
            protocol.get_order(
                self.catalog, order_id=order_id or "", client_order_id=client_order_id or ""
            )
        )

    async def list_orders(
        self,
        symbol: str | None = None,
        *,
        open_only: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Order]:
        return await self._run(
            protocol.list_orders(
                self.catalog,
                symbol=symbol or "",
                open_only=open_only,
                page_size=page_size,
                page_token=page_token,
            )
        )

    async def list_fills(
        self,
        symbol: str | None = None,
        *,
        order_id: str | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Fill]:
        return await self._run(
            protocol.list_fills(
                self.catalog,
                symbol=symbol or "",
                order_id=order_id or "",
                page_size=page_size,
                page_token=page_token,
            )
        )

    async def get_balances(self, asset: str | None = None) -> Balances:
        """The live balances the core holds (available, and held by open orders)."""
        return await self._run(protocol.get_balances(self.catalog, asset=asset or ""))

    # ------------------------------------------------------------ funding
    async def withdraw(
        self,
        asset: str,
        amount: DecimalInput,
        *,
        reference: str,
        transfer_id: str | None = None,
    ) -> Transfer:
        """Debits the available balance (needs the WITHDRAW permission)."""
        return await self._run(
            protocol.withdraw(
                self.catalog,
                asset=asset,
                amount=amount,
                reference=reference,
                transfer_id=transfer_id,
            )
        )

    async def get_transfer(self, transfer_id: str) -> Transfer:
        return await self._run(protocol.get_transfer(self.catalog, transfer_id))

    async def list_transfers(
        self,
        *,
        asset: str | None = None,
        kind: TransferKind | str | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Transfer]:
        """The account's deposits, withdrawals and adjustments, newest first."""
        return await self._run(
            protocol.list_transfers(
                self.catalog,
                asset=asset or "",
                kind=protocol.transfer_kind(kind),
                page_size=page_size,
                page_token=page_token,
            )
        )

    # ------------------------------------------------------------ streaming order entry
    def stream_orders(self) -> AsyncOrderStream:
        """The high-throughput order entry (TradingService.StreamOrders): batches in,
        one result batch out per batch, in order. Use it as an async context manager."""
        if self._grpc is None:
            raise TypeError("stream_orders needs the gRPC transport")
        return AsyncOrderStream(self, self._grpc)


class AsyncOrderStream:
    """One StreamOrders call over asyncio; see ``OrderStream`` for the resend guarantee."""

    def __init__(self, client: AsyncClient, transport: AsyncGrpcTransport) -> None:
        self._client = client
        self._transport = transport
        self._call: Any = None
        self._lock = asyncio.Lock()

    async def send(
        self, commands: Sequence[OrderCommand], *, batch_id: str | None = None
    ) -> BatchResult:
        """Sends one batch (at most 10,000 commands) and waits for its results."""
        request = await self._client._run(
            protocol.order_batch(self._client.catalog, commands, batch_id=batch_id)
        )
        response = await self._exchange(request)
        return await self._client._run(protocol.batch_result(self._client.catalog, response))

    async def _exchange(self, request: Message) -> trading_pb2.StreamOrdersResponse:
        attempt = 0
        async with self._lock:
            while True:
                attempt += 1
                if self._call is None:
                    self._call = self._transport.open_stream(
                        protocol.STREAM_ORDERS_METHOD, trading_pb2.StreamOrdersResponse
                    )
                try:
                    await self._call.write(request)
                    response = await self._call.read()
                except grpc.RpcError as rpc_error:
                    error: ExchangeError = from_rpc_error(rpc_error)
                else:
                    if isinstance(response, trading_pb2.StreamOrdersResponse):
                        return response
                    error = UnavailableError("UNAVAILABLE", "the order stream ended")
                self._cancel()
                if not isinstance(error, UnavailableError) or (
                    attempt >= self._client.retry.attempts_max
                ):
                    raise error
                await asyncio.sleep(self._client.retry.backoff_seconds(attempt))

    def _cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    async def close(self) -> None:
        async with self._lock:
            call, self._call = self._call, None
            if call is not None:
                await call.done_writing()
                call.cancel()

    async def __aenter__(self) -> AsyncOrderStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


__all__ = ["AsyncClient", "AsyncOrderStream", "run_step_async"]
