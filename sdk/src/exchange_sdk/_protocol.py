"""The SDK's calls without I/O ("sans-io"): each operation is a generator that yields the
gRPC calls it needs (``RpcCall``) and receives their responses, so the sync and the async
client run the very same request building, market lookups and conversions.

Invariants:
- Every mutating call carries an idempotency key chosen before the first attempt, so a
  transport may resend the identical request (same bytes) after UNAVAILABLE or a deadline
  and receives the original result.
- Amounts leave as minor units only through ``MarketSpec`` conversions (exact, refusing).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, TypeVar

from exchange.funding.v1 import funding_pb2
from exchange.marketdata.v1 import marketdata_pb2
from exchange.trading.v1 import trading_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from exchange_sdk.errors import InvalidRequestError, NotFoundError
from exchange_sdk.models import (
    AmendOrder,
    Asset,
    Balance,
    Balances,
    BatchResult,
    CancelAllOrders,
    CancelOrder,
    Candle,
    CandleInterval,
    CommandResult,
    Fill,
    MarketSpec,
    Order,
    OrderBook,
    OrderCommand,
    OrderResult,
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
from exchange_sdk.money import DecimalInput, to_minor_units

ResultT = TypeVar("ResultT")
ResponseT = TypeVar("ResponseT", bound=Message)

_TRADING: Final = "/exchange.trading.v1.TradingService/"
_FUNDING: Final = "/exchange.funding.v1.FundingService/"
_MARKET_DATA: Final = "/exchange.marketdata.v1.MarketDataService/"
STREAM_ORDERS_METHOD: Final = _TRADING + "StreamOrders"
IDEMPOTENCY_KEY_LENGTH_MAX: Final = 128


@dataclass(frozen=True)
class RpcCall:
    """One unary call an operation needs."""

    method: str
    request: Message
    response_type: type[Message]
    # Public market data is not signed; everything else is.
    signed: bool = True
    # Mutating calls: the key the message carries, also sent as `idempotency-key` metadata.
    idempotency_key: str | None = None


Step = Generator[RpcCall, Message, ResultT]


def new_idempotency_key() -> str:
    """A fresh client-chosen key (client_order_id, request_id, transfer_id)."""
    return uuid.uuid4().hex


def _key(given: str | None) -> str:
    if given is None or given == "":
        return new_idempotency_key()
    if len(given) > IDEMPOTENCY_KEY_LENGTH_MAX or not given.isascii():
        raise InvalidRequestError(
            "FIELD_INVALID",
            f"an idempotency key is at most {IDEMPOTENCY_KEY_LENGTH_MAX} ASCII characters",
            metadata={"field": "idempotency_key"},
        )
    return given


def _call(
    method: str,
    request: Message,
    response_type: type[ResponseT],
    *,
    signed: bool = True,
    idempotency_key: str | None = None,
) -> Step[ResponseT]:
    response = yield RpcCall(method, request, response_type, signed, idempotency_key)
    if not isinstance(response, response_type):
        raise TypeError(f"{method} answered {type(response).__name__}")
    return response


def catalog_of(markets: Iterable[MarketSpec], catalog: MarketCatalog | None) -> MarketCatalog:
    """The clients' catalog: the one given (with `markets` added), else a new one."""
    chosen = catalog if catalog is not None else MarketCatalog()
    for market in markets:
        chosen.add_market(market)
    return chosen


def _market_data(method: str, request: Message, response_type: type[ResponseT]) -> Step[ResponseT]:
    """A public MarketDataService call (not signed: market data is open to everyone)."""
    return (yield from _call(_MARKET_DATA + method, request, response_type, signed=False))


class MarketCatalog:
    """The market specs and asset scales conversions need, fetched once and cached.

    Seed it (``markets=`` on the clients, or ``load_json``) to skip the lookups, e.g. with
    the output of ``GET /v1/markets`` saved to a file.
    """

    def __init__(self, markets: Iterable[MarketSpec] = (), assets: Iterable[Asset] = ()):
        self._markets: dict[str, MarketSpec] = {}
        self._scales: dict[str, int] = {}
        for market in markets:
            self.add_market(market)
        for asset in assets:
            self._scales[asset.asset] = asset.scale

    def add_market(self, market: MarketSpec) -> MarketSpec:
        self._markets[market.symbol] = market
        self._scales.setdefault(market.base_asset, market.base_scale)
        self._scales.setdefault(market.quote_asset, market.quote_scale)
        return market

    def add_asset(self, asset: Asset) -> None:
        self._scales[asset.asset] = asset.scale

    @property
    def markets(self) -> dict[str, MarketSpec]:
        return dict(self._markets)

    def known_asset_scale(self, asset: str) -> int | None:
        """The scale of `asset` if already known (from a market or ListAssets), no lookup."""
        return self._scales.get(asset)

    @classmethod
    def load_json(cls, path: Path) -> MarketCatalog:
        """From a file holding the proto3 JSON of ``ListMarketsResponse`` (what
        ``GET /v1/markets`` returns), optionally with an ``assets`` list beside it."""
        document = json.loads(path.read_text())
        markets = marketdata_pb2.ListMarketsResponse()
        json_format.ParseDict({"markets": document.get("markets", [])}, markets)
        assets = marketdata_pb2.ListAssetsResponse()
        json_format.ParseDict({"assets": document.get("assets", [])}, assets)
        return cls(
            markets=[MarketSpec.from_proto(market) for market in markets.markets],
            assets=[Asset.from_proto(asset) for asset in assets.assets],
        )

    def market(self, symbol: str) -> Step[MarketSpec]:
        known = self._markets.get(symbol)
        if known is not None:
            return known
        response = yield from _market_data(
            "GetMarket",
            marketdata_pb2.GetMarketRequest(symbol=symbol),
            marketdata_pb2.GetMarketResponse,
        )
        return self.add_market(MarketSpec.from_proto(response.market))

    def markets_of(self, symbols: Iterable[str]) -> Step[dict[str, MarketSpec]]:
        found: dict[str, MarketSpec] = {}
        for symbol in sorted(set(symbols)):
            found[symbol] = yield from self.market(symbol)
        return found

    def asset_scale(self, asset: str) -> Step[int]:
        known = self._scales.get(asset)
        if known is not None:
            return known
        response = yield from _market_data(
            "ListAssets",
            marketdata_pb2.ListAssetsRequest(),
            marketdata_pb2.ListAssetsResponse,
        )
        for listed in response.assets:
            self._scales[listed.asset] = listed.scale
        scale = self._scales.get(asset)
        if scale is None:
            raise NotFoundError("ASSET_UNKNOWN", f"no asset {asset!r}", metadata={"asset": asset})
        return scale

    def asset_scales(self, assets: Iterable[str]) -> Step[dict[str, int]]:
        found: dict[str, int] = {}
        for asset in sorted(set(assets)):
            found[asset] = yield from self.asset_scale(asset)
        return found


# ---------------------------------------------------------------- market data (public)


def list_assets(catalog: MarketCatalog) -> Step[tuple[Asset, ...]]:
    response = yield from _market_data(
        "ListAssets",
        marketdata_pb2.ListAssetsRequest(),
        marketdata_pb2.ListAssetsResponse,
    )
    assets = tuple(Asset.from_proto(asset) for asset in response.assets)
    for asset in assets:
        catalog.add_asset(asset)
    return assets


def list_markets(catalog: MarketCatalog) -> Step[tuple[MarketSpec, ...]]:
    response = yield from _market_data(
        "ListMarkets",
        marketdata_pb2.ListMarketsRequest(),
        marketdata_pb2.ListMarketsResponse,
    )
    return tuple(catalog.add_market(MarketSpec.from_proto(m)) for m in response.markets)


def get_market(catalog: MarketCatalog, symbol: str, *, refresh: bool) -> Step[MarketSpec]:
    if not refresh:
        return (yield from catalog.market(symbol))
    response = yield from _market_data(
        "GetMarket",
        marketdata_pb2.GetMarketRequest(symbol=symbol),
        marketdata_pb2.GetMarketResponse,
    )
    return catalog.add_market(MarketSpec.from_proto(response.market))


def get_order_book(catalog: MarketCatalog, symbol: str, *, depth: int) -> Step[OrderBook]:
    market = yield from catalog.market(symbol)
    response = yield from _market_data(
        "GetOrderBook",
        marketdata_pb2.GetOrderBookRequest(symbol=symbol, depth=depth),
        marketdata_pb2.GetOrderBookResponse,
    )
    return OrderBook.from_proto(response.book, market)


def list_trades(
    catalog: MarketCatalog, symbol: str, *, page_size: int, page_token: str
) -> Step[Page[PublicTrade]]:
    market = yield from catalog.market(symbol)
    response = yield from _market_data(
        "ListTrades",
        marketdata_pb2.ListTradesRequest(symbol=symbol, page_size=page_size, page_token=page_token),
        marketdata_pb2.ListTradesResponse,
    )
    trades = tuple(PublicTrade.from_proto(trade, market) for trade in response.trades)
    return Page(trades, response.next_page_token)


def list_candles(
    catalog: MarketCatalog,
    symbol: str,
    *,
    interval: CandleInterval,
    start_time: datetime | None,
    end_time: datetime | None,
    limit: int,
) -> Step[tuple[Candle, ...]]:
    market = yield from catalog.market(symbol)
    request = marketdata_pb2.ListCandlesRequest(symbol=symbol, interval=interval.value, limit=limit)
    if start_time is not None:
        request.start_time.FromDatetime(start_time)
    if end_time is not None:
        request.end_time.FromDatetime(end_time)
    response = yield from _market_data("ListCandles", request, marketdata_pb2.ListCandlesResponse)
    return tuple(Candle.from_proto(candle, market) for candle in response.candles)


def get_ticker(catalog: MarketCatalog, symbol: str) -> Step[Ticker]:
    market = yield from catalog.market(symbol)
    response = yield from _market_data(
        "GetTicker",
        marketdata_pb2.GetTickerRequest(symbol=symbol),
        marketdata_pb2.GetTickerResponse,
    )
    return Ticker.from_proto(response.ticker, market)


def list_tickers(catalog: MarketCatalog) -> Step[tuple[Ticker, ...]]:
    response = yield from _market_data(
        "ListTickers",
        marketdata_pb2.ListTickersRequest(),
        marketdata_pb2.ListTickersResponse,
    )
    markets = yield from catalog.markets_of(ticker.symbol for ticker in response.tickers)
    return tuple(Ticker.from_proto(ticker, markets[ticker.symbol]) for ticker in response.tickers)


# ---------------------------------------------------------------- trading


def place_request(market: MarketSpec, command: PlaceOrder) -> trading_pb2.PlaceOrderRequest:
    """The wire form of a new order; refuses excess precision and off-grid values."""
    order_type = command.order_type
    if order_type is OrderType.UNSPECIFIED:
        order_type = OrderType.MARKET if command.price is None else OrderType.LIMIT
    request = trading_pb2.PlaceOrderRequest(
        client_order_id=_key(command.client_order_id),
        symbol=market.symbol,
        side=command.side.value,
        order_type=order_type.value,
        time_in_force=command.time_in_force.value,
        post_only=command.post_only,
        self_trade_prevention=command.self_trade_prevention.value,
    )
    if command.price is not None:
        request.price = market.price_units(command.price)
    if command.quantity is not None:
        request.quantity = market.quantity_units(command.quantity)
    if command.quote_quantity is not None:
        request.quote_quantity = market.quote_units(command.quote_quantity)
    return request


def _markets_of_orders(
    catalog: MarketCatalog, orders: Iterable[trading_pb2.Order], fills: Iterable[trading_pb2.Fill]
) -> Step[dict[str, MarketSpec]]:
    symbols = [order.symbol for order in orders] + [fill.symbol for fill in fills]
    return (yield from catalog.markets_of(symbols))


def place_order(catalog: MarketCatalog, command: PlaceOrder) -> Step[OrderResult]:
    market = yield from catalog.market(command.symbol)
    request = place_request(market, command)
    response = yield from _call(
        _TRADING + "PlaceOrder",
        request,
        trading_pb2.PlaceOrderResponse,
        idempotency_key=request.client_order_id,
    )
    return OrderResult(
        order=Order.from_proto(response.order, market),
        fills=tuple(Fill.from_proto(fill, market) for fill in response.fills),
    )


def cancel_request(command: CancelOrder) -> trading_pb2.CancelOrderRequest:
    if bool(command.order_id) == bool(command.client_order_id):
        raise InvalidRequestError(
            "FIELD_INVALID",
            "cancel takes exactly one of order_id and client_order_id",
            metadata={"field": "order_id"},
        )
    return trading_pb2.CancelOrderRequest(
        order_id=command.order_id,
        client_order_id=command.client_order_id,
        request_id=_key(command.request_id),
    )


def cancel_order(catalog: MarketCatalog, command: CancelOrder) -> Step[Order]:
    request = cancel_request(command)
    response = yield from _call(
        _TRADING + "CancelOrder",
        request,
        trading_pb2.CancelOrderResponse,
        idempotency_key=request.request_id,
    )
    market = yield from catalog.market(response.order.symbol)
    return Order.from_proto(response.order, market)


def amend_request(market: MarketSpec, command: AmendOrder) -> trading_pb2.AmendOrderRequest:
    if command.new_quantity is None and command.new_price is None:
        raise InvalidRequestError(
            "FIELD_INVALID",
            "amend needs a new quantity or a new price",
            metadata={"field": "new_price"},
        )
    return trading_pb2.AmendOrderRequest(
        order_id=command.order_id,
        new_quantity=0
        if command.new_quantity is None
        else market.quantity_units(command.new_quantity),
        new_price=0 if command.new_price is None else market.price_units(command.new_price),
        request_id=_key(command.request_id),
    )


def amend_order(catalog: MarketCatalog, command: AmendOrder) -> Step[OrderResult]:
    market = yield from catalog.market(command.symbol)
    request = amend_request(market, command)
    response = yield from _call(
        _TRADING + "AmendOrder",
        request,
        trading_pb2.AmendOrderResponse,
        idempotency_key=request.request_id,
    )
    return OrderResult(
        order=Order.from_proto(response.order, market),
        fills=tuple(Fill.from_proto(fill, market) for fill in response.fills),
        priority_kept=response.priority_kept,
    )


def cancel_all_request(command: CancelAllOrders) -> trading_pb2.CancelAllOrdersRequest:
    return trading_pb2.CancelAllOrdersRequest(
        symbol=command.symbol, request_id=_key(command.request_id)
    )


def cancel_all_orders(catalog: MarketCatalog, command: CancelAllOrders) -> Step[tuple[Order, ...]]:
    request = cancel_all_request(command)
    response = yield from _call(
        _TRADING + "CancelAllOrders",
        request,
        trading_pb2.CancelAllOrdersResponse,
        idempotency_key=request.request_id,
    )
    markets = yield from _markets_of_orders(catalog, response.cancelled_orders, ())
    return tuple(
        Order.from_proto(order, markets[order.symbol]) for order in response.cancelled_orders
    )


def get_order(catalog: MarketCatalog, *, order_id: str, client_order_id: str) -> Step[Order]:
    if bool(order_id) == bool(client_order_id):
        raise InvalidRequestError(
            "FIELD_INVALID",
            "give exactly one of order_id and client_order_id",
            metadata={"field": "order_id"},
        )
    response = yield from _call(
        _TRADING + "GetOrder",
        trading_pb2.GetOrderRequest(order_id=order_id, client_order_id=client_order_id),
        trading_pb2.GetOrderResponse,
    )
    market = yield from catalog.market(response.order.symbol)
    return Order.from_proto(response.order, market)


def list_orders(
    catalog: MarketCatalog, *, symbol: str, open_only: bool, page_size: int, page_token: str
) -> Step[Page[Order]]:
    response = yield from _call(
        _TRADING + "ListOrders",
        trading_pb2.ListOrdersRequest(
            symbol=symbol, open_only=open_only, page_size=page_size, page_token=page_token
        ),
        trading_pb2.ListOrdersResponse,
    )
    markets = yield from _markets_of_orders(catalog, response.orders, ())
    orders = tuple(Order.from_proto(order, markets[order.symbol]) for order in response.orders)
    return Page(orders, response.next_page_token)


def list_fills(
    catalog: MarketCatalog, *, symbol: str, order_id: str, page_size: int, page_token: str
) -> Step[Page[Fill]]:
    response = yield from _call(
        _TRADING + "ListFills",
        trading_pb2.ListFillsRequest(
            symbol=symbol, order_id=order_id, page_size=page_size, page_token=page_token
        ),
        trading_pb2.ListFillsResponse,
    )
    markets = yield from _markets_of_orders(catalog, (), response.fills)
    fills = tuple(Fill.from_proto(fill, markets[fill.symbol]) for fill in response.fills)
    return Page(fills, response.next_page_token)


def get_balances(catalog: MarketCatalog, *, asset: str) -> Step[Balances]:
    response = yield from _call(
        _TRADING + "ListAccountBalances",
        trading_pb2.ListAccountBalancesRequest(asset=asset),
        trading_pb2.ListAccountBalancesResponse,
    )
    scales = yield from catalog.asset_scales(balance.asset for balance in response.balances)
    balances = tuple(
        Balance.from_proto(balance, scales[balance.asset]) for balance in response.balances
    )
    return Balances(balances=balances, engine_seq=response.engine_seq)


# ---------------------------------------------------------------- funding (the trader's own)


def withdraw(
    catalog: MarketCatalog,
    *,
    asset: str,
    amount: DecimalInput,
    reference: str,
    transfer_id: str | None,
) -> Step[Transfer]:
    scale = yield from catalog.asset_scale(asset)
    request = funding_pb2.CreateWithdrawalRequest(
        transfer_id=_key(transfer_id),
        asset=asset,
        amount=to_minor_units(amount, scale=scale),
        reference=reference,
    )
    response = yield from _call(
        _FUNDING + "CreateWithdrawal",
        request,
        funding_pb2.CreateWithdrawalResponse,
        idempotency_key=request.transfer_id,
    )
    return Transfer.from_proto(response.transfer, scale)


def get_transfer(catalog: MarketCatalog, transfer_id: str) -> Step[Transfer]:
    response = yield from _call(
        _FUNDING + "GetTransfer",
        funding_pb2.GetTransferRequest(transfer_id=transfer_id),
        funding_pb2.GetTransferResponse,
    )
    scale = yield from catalog.asset_scale(response.transfer.asset)
    return Transfer.from_proto(response.transfer, scale)


def list_transfers(
    catalog: MarketCatalog, *, asset: str, kind: TransferKind, page_size: int, page_token: str
) -> Step[Page[Transfer]]:
    response = yield from _call(
        _FUNDING + "ListTransfers",
        funding_pb2.ListTransfersRequest(
            asset=asset, kind=kind.value, page_size=page_size, page_token=page_token
        ),
        funding_pb2.ListTransfersResponse,
    )
    scales = yield from catalog.asset_scales(transfer.asset for transfer in response.transfers)
    transfers = tuple(Transfer.from_proto(t, scales[t.asset]) for t in response.transfers)
    return Page(transfers, response.next_page_token)


# ---------------------------------------------------------------- streaming order entry


def order_batch(
    catalog: MarketCatalog, commands: Sequence[OrderCommand], *, batch_id: str | None
) -> Step[trading_pb2.StreamOrdersRequest]:
    """The wire batch of `commands`, every command with its idempotency key fixed now, so
    the batch can be resent unchanged on a new stream after a failure."""
    request = trading_pb2.StreamOrdersRequest(batch_id=batch_id or new_idempotency_key())
    for command in commands:
        entry = request.commands.add()
        if isinstance(command, PlaceOrder):
            market = yield from catalog.market(command.symbol)
            entry.place.CopyFrom(place_request(market, command))
        elif isinstance(command, CancelOrder):
            entry.cancel.CopyFrom(cancel_request(command))
        elif isinstance(command, AmendOrder):
            market = yield from catalog.market(command.symbol)
            entry.amend.CopyFrom(amend_request(market, command))
        else:
            entry.cancel_all.CopyFrom(cancel_all_request(command))
    return request


def batch_result(
    catalog: MarketCatalog, response: trading_pb2.StreamOrdersResponse
) -> Step[BatchResult]:
    symbols = [r.order.symbol for r in response.results if r.HasField("order")]
    symbols += [fill.symbol for r in response.results for fill in r.fills]
    markets = yield from catalog.markets_of(symbols)
    return BatchResult(
        batch_id=response.batch_id,
        results=tuple(CommandResult.from_proto(result, markets) for result in response.results),
        engine_seq=response.engine_seq,
    )


def place_command(
    symbol: str,
    side: Side | str,
    quantity: DecimalInput | None,
    *,
    price: DecimalInput | None,
    order_type: OrderType | str | None,
    time_in_force: TimeInForce | str | None,
    quote_quantity: DecimalInput | None,
    post_only: bool,
    self_trade_prevention: SelfTradePrevention | str | None,
    client_order_id: str | None,
) -> PlaceOrder:
    """The PlaceOrder of the clients' ``place_order`` keywords (enums also by name)."""
    return PlaceOrder(
        symbol=symbol,
        side=side if isinstance(side, Side) else Side.parse(side),
        quantity=quantity,
        price=price,
        order_type=_enum(OrderType, order_type, OrderType.UNSPECIFIED),
        time_in_force=_enum(TimeInForce, time_in_force, TimeInForce.UNSPECIFIED),
        quote_quantity=quote_quantity,
        post_only=post_only,
        self_trade_prevention=_enum(
            SelfTradePrevention, self_trade_prevention, SelfTradePrevention.UNSPECIFIED
        ),
        client_order_id=client_order_id or "",
    )


EnumT = TypeVar("EnumT", OrderType, TimeInForce, SelfTradePrevention, TransferKind)


def _enum(kind: type[EnumT], value: EnumT | str | None, default: EnumT) -> EnumT:
    if value is None:
        return default
    if isinstance(value, str):
        return kind.parse(value)
    return value


def transfer_kind(value: TransferKind | str | None) -> TransferKind:
    return _enum(TransferKind, value, TransferKind.UNSPECIFIED)
