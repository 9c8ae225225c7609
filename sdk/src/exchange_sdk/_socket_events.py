"""The typed events of the WebSocket's data frames (``to_event``), amounts as ``Decimal``.

A frame whose market or asset the ``MarketCatalog`` does not know comes as ``RawEvent``, as
do the book frames and heartbeats. Imported as ``exchange_sdk.websocket``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from exchange.websocket.v1 import websocket_pb2

from exchange_sdk._protocol import MarketCatalog
from exchange_sdk.errors import error_reason_name
from exchange_sdk.models import (
    Balance,
    CancelReason,
    Candle,
    Liquidity,
    MarketSpec,
    PublicTrade,
    Side,
    Ticker,
)


@dataclass(frozen=True)
class TradeEvent:
    channel: str
    trade: PublicTrade


@dataclass(frozen=True)
class CandleEvent:
    channel: str
    candle: Candle


@dataclass(frozen=True)
class TickerEvent:
    channel: str
    ticker: Ticker


@dataclass(frozen=True)
class FillEvent:
    """One of the account's fills (private ``fills`` channel)."""

    channel: str
    trade_id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: Side
    liquidity: Liquidity
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    fee: Decimal
    fee_asset: str
    remaining_quantity: Decimal


@dataclass(frozen=True)
class OrderEvent:
    """A change of one of the account's orders (private ``orders`` channel): ``change`` is
    ``accepted``, ``rejected``, ``amended``, ``cancelled`` or ``expired``; ``reason`` is the
    rejection's ErrorInfo reason or the cancel/expiry reason's name. Amounts in whole units
    of ``symbol``'s market (None where the change has no such amount, or the market is not
    known): ``price``/``quantity`` the order's limit price and quantity after an accept or
    an amend; ``filled_quantity`` what had filled when it was cancelled or expired."""

    channel: str
    seq: int
    change: str
    order_id: str
    client_order_id: str
    side: Side
    reason: str
    message: websocket_pb2.OrderUpdate = field(repr=False, compare=False)
    symbol: str = ""
    price: Decimal | None = None
    quantity: Decimal | None = None
    filled_quantity: Decimal | None = None


@dataclass(frozen=True)
class BalanceEvent:
    channel: str
    balance: Balance
    engine_seq: int


@dataclass(frozen=True)
class RawEvent:
    """Anything else (book frames, order updates, heartbeats), as the proto message."""

    channel: str
    kind: str
    message: websocket_pb2.ServerMessage


SocketEvent = (
    TradeEvent | CandleEvent | TickerEvent | FillEvent | OrderEvent | BalanceEvent | RawEvent
)


def to_event(message: websocket_pb2.ServerMessage, catalog: MarketCatalog) -> SocketEvent:
    """The typed event of a data frame; RawEvent when its market or asset is not known."""
    kind = message.WhichOneof("message") or ""
    channel = message.channel
    if kind == "order":
        return _order_event(channel, message.order, catalog.markets.get(message.order.symbol))
    if kind == "balance":
        scale = catalog.known_asset_scale(message.balance.balance.asset)
        if scale is None:
            return RawEvent(channel, kind, message)
        balance = Balance.from_proto(message.balance.balance, scale)
        return BalanceEvent(channel, balance, message.balance.engine_seq)
    symbol = {
        "trade": message.trade.trade.symbol,
        "candle": message.candle.candle.symbol,
        "ticker": message.ticker.ticker.symbol,
        "fill": message.fill.symbol,
    }.get(kind, "")
    spec = catalog.markets.get(symbol)
    event: SocketEvent = RawEvent(channel, kind, message)
    if spec is None:
        pass
    elif kind == "trade":
        event = TradeEvent(channel, PublicTrade.from_proto(message.trade.trade, spec))
    elif kind == "candle":
        event = CandleEvent(channel, Candle.from_proto(message.candle.candle, spec))
    elif kind == "ticker":
        event = TickerEvent(channel, Ticker.from_proto(message.ticker.ticker, spec))
    elif kind == "fill":
        event = _fill_event(channel, message.fill, spec)
    return event


def _fill_event(channel: str, fill: websocket_pb2.FillUpdate, spec: MarketSpec) -> FillEvent:
    return FillEvent(
        channel=channel,
        trade_id=fill.trade_id,
        order_id=fill.order_id,
        client_order_id=fill.client_order_id,
        symbol=fill.symbol,
        side=Side.from_proto(fill.side),
        liquidity=Liquidity.from_proto(fill.liquidity),
        price=spec.price(fill.price),
        quantity=spec.quantity(fill.quantity),
        quote_quantity=spec.quote(fill.quote_quantity),
        fee=spec.quote(fill.fee),
        fee_asset=fill.fee_asset,
        remaining_quantity=spec.quantity(fill.remaining_quantity),
    )


def _order_event(
    channel: str, update: websocket_pb2.OrderUpdate, spec: MarketSpec | None
) -> OrderEvent:
    change = update.WhichOneof("change") or ""
    side, reason = Side.UNSPECIFIED, ""
    price = quantity = filled = None
    if spec is not None and change in ("accepted", "amended"):
        order = getattr(update, change)
        price, quantity = spec.price(order.price), spec.quantity(order.quantity)
    if spec is not None and change in ("cancelled", "expired"):
        filled = spec.quantity(getattr(update, change).filled_quantity)
    if change == "accepted":
        side = Side.from_proto(update.accepted.side)
    elif change == "rejected":
        side = Side.from_proto(update.rejected.side)
        reason = error_reason_name(update.rejected.reason)
    elif change == "cancelled":
        reason = CancelReason.from_proto(update.cancelled.reason).name
    elif change == "expired":
        reason = CancelReason.from_proto(update.expired.reason).name
    payload = getattr(update, change) if change else None
    return OrderEvent(
        channel=channel,
        seq=update.seq,
        change=change,
        order_id=getattr(payload, "order_id", ""),
        client_order_id=getattr(payload, "client_order_id", ""),
        side=side,
        reason=reason,
        message=update,
        symbol=update.symbol,
        price=price,
        quantity=quantity,
        filled_quantity=filled,
    )
