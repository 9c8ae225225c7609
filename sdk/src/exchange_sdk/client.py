"""The blocking client: every call of the exchange a trader may make, typed, signed,
retried safely (see ``exchange_sdk.transport``), with ``Decimal`` amounts in and out.

The request building and conversions live in ``exchange_sdk._protocol`` and are shared
with ``AsyncClient``; this module only runs them over a blocking transport.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Final, TypeVar

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
from exchange_sdk.transport import DEFAULT_RETRY, GrpcTransport, RetryPolicy, Transport

ResultT = TypeVar("ResultT")
_END: Final = object()


def run_step(transport: Transport, step: Step[ResultT], timeout_seconds: float | None) -> ResultT:
    """Drives a sans-io operation over a blocking transport."""
    try:
        call = next(step)
        while True:
            response = transport.unary(call, timeout_seconds=timeout_seconds)
            call = step.send(response)
    except StopIteration as finished:
        result: ResultT = finished.value
        return result


class Client:
    """A trader's blocking connection to the exchange (gRPC through Envoy).

    >>> client = Client("127.0.0.1:8080", api_key="KEY", api_secret="SECRET")  # doctest: +SKIP
    >>> client.place_order("BTC-USDT", "buy", "0.01", price="50000")  # doctest: +SKIP
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
        transport: Transport | None = None,
    ) -> None:
        self.catalog = protocol.catalog_of(markets, catalog)
        self.timeout_seconds = timeout_seconds
        credentials = ApiCredentials.of(api_key, api_secret)
        self._grpc: GrpcTransport | None = None
        if transport is None:
            self._grpc = GrpcTransport(
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

    def _run(self, step: Step[ResultT], timeout_seconds: float | None = None) -> ResultT:
        return run_step(self.transport, step, timeout_seconds)

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ market data (public)
    def list_assets(self) -> tuple[Asset, ...]:
        return self._run(protocol.list_assets(self.catalog))

    def list_markets(self) -> tuple[MarketSpec, ...]:
        return self._run(protocol.list_markets(self.catalog))

    def get_market(self, symbol: str, *, refresh: bool = False) -> MarketSpec:
        """A market's rules; cached after the first lookup unless ``refresh``."""
        return self._run(protocol.get_market(self.catalog, symbol, refresh=refresh))

    def get_order_book(self, symbol: str, *, depth: int = 0) -> OrderBook:
        return self._run(protocol.get_order_book(self.catalog, symbol, depth=depth))

    def list_trades(
        self, symbol: str, *, page_size: int = 0, page_token: str = ""
    ) -> Page[PublicTrade]:
        return self._run(
            protocol.list_trades(self.catalog, symbol, page_size=page_size, page_token=page_token)
        )

    def list_candles(
        self,
        symbol: str,
        *,
        interval: CandleInterval = CandleInterval.ONE_MINUTE,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        limit: int = 0,
    ) -> tuple[Candle, ...]:
        return self._run(
            protocol.list_candles(
                self.catalog,
                symbol,
                interval=interval,
                start_time=start_time,
                end_time=end_time,
                limit=limit,
            )
        )

    def get_ticker(self, symbol: str) -> Ticker:
        return self._run(protocol.get_ticker(self.catalog, symbol))

    def list_tickers(self) -> tuple[Ticker, ...]:
        return self._run(protocol.list_tickers(self.catalog))

    # ------------------------------------------------------------ trading
    def place_order(
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
        return self._run(protocol.place_order(self.catalog, command))

    def cancel_order(
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
        return self._run(protocol.cancel_order(self.catalog, command))

    def amend_order(
        self,
        order_id: str,
        *,
        symbol: str,
        new_quantity: DecimalInput | None = None,
        new_price: DecimalInput | None = None,
        request_id: str | None = None,
    ) -> OrderResult:
        command = AmendOrder(symbol, order_id, new_quantity, new_price, request_id or "")
        return self._run(protocol.amend_order(self.catalog, command))

    def cancel_all_orders(
        self, symbol: str | None = None, *, request_id: str | None = None
    ) -> tuple[Order, ...]:
        command = CancelAllOrders(symbol=symbol or "", request_id=request_id or "")
        return self._run(protocol.cancel_all_orders(self.catalog, command))

    def get_order(
        self, order_id: str | None = None, *, client_order_id: str | None = None
    ) -> Order:
        return self._run(
            protocol.get_order(
                self.catalog, order_id=order_id or "", client_order_id=client_order_id or ""
            )
        )

    def list_orders(
        self,
        symbol: str | None = None,
        *,
        open_only: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Order]:
        return self._run(
            protocol.list_orders(
                self.catalog,
                symbol=symbol or "",
                open_only=open_only,
                page_size=page_size,
                page_token=page_token,
            )
        )

    def list_fills(
        self,
        symbol: str | None = None,
        *,
        order_id: str | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Fill]:
        return self._run(
            protocol.list_fills(
                self.catalog,
                symbol=symbol or "",
                order_id=order_id or "",
                page_size=page_size,
                page_token=page_token,
            )
        )

    def get_balances(self, asset: str | None = None) -> Balances:
        """The live balances the core holds (available, and held by open orders)."""
        return self._run(protocol.get_balances(self.catalog, asset=asset or ""))

    # ------------------------------------------------------------ funding
    def withdraw(
        self,
        asset: str,
        amount: DecimalInput,
        *,
        reference: str,
        transfer_id: str | None = None,
    ) -> Transfer:
        """Debits the available balance (needs the WITHDRAW permission)."""
        return self._run(
            protocol.withdraw(
                self.catalog,
                asset=asset,
                amount=amount,
                reference=reference,
                transfer_id=transfer_id,
            )
        )

    def get_transfer(self, transfer_id: str) -> Transfer:
        return self._run(protocol.get_transfer(self.catalog, transfer_id))

    def list_transfers(
        self,
        *,
        asset: str | None = None,
        kind: TransferKind | str | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Transfer]:
        """The account's deposits, withdrawals and adjustments, newest first."""
        return self._run(
            protocol.list_transfers(
                self.catalog,
                asset=asset or "",
                kind=protocol.transfer_kind(kind),
                page_size=page_size,
                page_token=page_token,
            )
        )

    # ------------------------------------------------------------ streaming order entry
    def stream_orders(self) -> OrderStream:
        """The high-throughput order entry (TradingService.StreamOrders): batches in,
        one result batch out per batch, in order. Use it as a context manager."""
        if self._grpc is None:
            raise TypeError("stream_orders needs the gRPC transport")
        return OrderStream(self, self._grpc)


class OrderStream:
    """One StreamOrders call. ``send`` is blocking and not for concurrent use; a stream that
    breaks (UNAVAILABLE) is reopened and the unanswered batch resent unchanged - its
    commands carry their idempotency keys, so nothing is applied twice."""

    def __init__(self, client: Client, transport: GrpcTransport) -> None:
        self._client = client
        self._transport = transport
        self._requests: queue.Queue[Any] | None = None
        self._responses: Iterator[trading_pb2.StreamOrdersResponse] | None = None
        self._lock = threading.Lock()

    def _open(self) -> None:
        requests: queue.Queue[Any] = queue.Queue()
        self._requests = requests
        self._responses = self._transport.open_stream(
            protocol.STREAM_ORDERS_METHOD,
            iter(requests.get, _END),
            trading_pb2.StreamOrdersResponse,
        )

    def _close_call(self) -> None:
        if self._requests is not None:
            self._requests.put(_END)
        if self._responses is not None and isinstance(self._responses, grpc.Call):
            self._responses.cancel()
        self._requests = None
        self._responses = None

    def send(self, commands: Sequence[OrderCommand], *, batch_id: str | None = None) -> BatchResult:
        """Sends one batch (at most 10,000 commands) and waits for its results."""
        request = self._client._run(
            protocol.order_batch(self._client.catalog, commands, batch_id=batch_id)
        )
        response = self._exchange(request)
        return self._client._run(protocol.batch_result(self._client.catalog, response))

    def _exchange(self, request: Message) -> trading_pb2.StreamOrdersResponse:
        attempt = 0
        with self._lock:
            while True:
                attempt += 1
                if self._responses is None:
                    self._open()
                if self._requests is None or self._responses is None:
                    raise RuntimeError("the order stream did not open")
                self._requests.put(request)
                try:
                    return next(self._responses)
                except grpc.RpcError as rpc_error:
                    error: ExchangeError = from_rpc_error(rpc_error)
                except StopIteration:
                    error = UnavailableError("UNAVAILABLE", "the order stream ended")
                self._close_call()
                retryable = isinstance(error, UnavailableError)
                if not retryable or attempt >= self._client.retry.attempts_max:
                    raise error
                time.sleep(self._client.retry.backoff_seconds(attempt))

    def close(self) -> None:
        with self._lock:
            self._close_call()

    def __enter__(self) -> OrderStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["Client", "OrderStream", "run_step"]
