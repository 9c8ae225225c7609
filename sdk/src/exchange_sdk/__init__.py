"""Typed Python client of the exchange.

The generated contracts ship in the same wheel as the ``exchange`` package
(``exchange.trading.v1`` and so on); this package is the hand-written public API:
``Client`` / ``AsyncClient`` (gRPC through Envoy, signed, safely retried), the models
(``Decimal`` amounts, enums, frozen dataclasses), typed errors with the exchange's named
reasons, the WebSocket client with a self-resyncing ``LocalOrderBook``, and the ``exchange``
command line.
"""

from exchange_sdk._protocol import MarketCatalog, new_idempotency_key
from exchange_sdk.async_client import AsyncClient, AsyncOrderStream
from exchange_sdk.book import LocalOrderBook
from exchange_sdk.client import Client, OrderStream
from exchange_sdk.errors import (
    AuthenticationError,
    ConflictError,
    ExchangeError,
    InvalidRequestError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    PrecisionExceededError,
    RejectedError,
    ServerError,
    UnavailableError,
    error_reason_name,
)
from exchange_sdk.models import (
    AmendOrder,
    Asset,
    Balance,
    Balances,
    BatchResult,
    BookLevel,
    CancelAllOrders,
    CancelOrder,
    Candle,
    CandleInterval,
    CommandResult,
    Fill,
    Liquidity,
    MarketSpec,
    Order,
    OrderBook,
    OrderResult,
    OrderStatus,
    OrderType,
    Page,
    PlaceOrder,
    PublicTrade,
    SelfTradePrevention,
    Side,
    Ticker,
    TimeInForce,
    Transfer,
    TransferKind,
)
from exchange_sdk.money import from_minor_units, to_minor_units
from exchange_sdk.signing import ApiCredentials, RequestSigner
from exchange_sdk.transport import RetryPolicy

__all__ = [
    "AmendOrder",
    "ApiCredentials",
    "Asset",
    "AsyncClient",
    "AsyncOrderStream",
    "AuthenticationError",
    "Balance",
    "Balances",
    "BatchResult",
    "BookLevel",
    "CancelAllOrders",
    "CancelOrder",
    "Candle",
    "CandleInterval",
    "Client",
    "CommandResult",
    "ConflictError",
    "ExchangeError",
    "Fill",
    "InvalidRequestError",
    "LimitExceededError",
    "Liquidity",
    "LocalOrderBook",
    "MarketCatalog",
    "MarketSpec",
    "NotFoundError",
    "Order",
    "OrderBook",
    "OrderResult",
    "OrderStatus",
    "OrderStream",
    "OrderType",
    "Page",
    "PermissionDeniedError",
    "PlaceOrder",
    "PrecisionExceededError",
    "PublicTrade",
    "RejectedError",
    "RequestSigner",
    "RetryPolicy",
    "SelfTradePrevention",
    "ServerError",
    "Side",
    "Ticker",
    "TimeInForce",
    "Transfer",
    "TransferKind",
    "UnavailableError",
    "error_reason_name",
    "from_minor_units",
    "new_idempotency_key",
    "to_minor_units",
]
